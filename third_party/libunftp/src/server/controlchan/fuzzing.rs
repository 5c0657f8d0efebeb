//! Entry points for coverage-guided fuzzing of the control channel's input side (feature
//! `fuzzing`, off by default). The decoder and the line parser stay crate-private: this module
//! hands out only their behaviour, as plain data (each item's `Debug` text), so that a fuzz
//! harness outside the crate can drive them without the crate's types becoming public API.

use super::{ControlChanError, codecs::FtpCodec, line_parser};
use bytes::BytesMut;
use tokio_util::codec::Decoder;

/// Longest command line the decoder accepts (see `FtpCodec`).
pub const MAX_LINE_LEN: usize = super::codecs::MAX_LINE_LEN;

/// What the decoder made of a stream of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// One entry per item, in order: `Ok(command)` or `Err(error)`, as `Debug` text.
    pub items: Vec<Result<String, String>>,
    /// The most bytes the decoder's buffer held at any point.
    pub peak_buffer: usize,
    /// The largest single read fed to the decoder.
    pub largest_read: usize,
}

/// Feeds `input` to a fresh `FtpCodec` the way a socket delivers it, in reads of the sizes
/// `reads` yields (cycled; a size of 0 counts as 1), draining every item after each read, and
/// then once more at the end of the stream (`decode_eof`, whose "bytes remaining" error for an
/// unfinished last line is the last item then).
pub fn decode_stream(input: &[u8], reads: &[usize]) -> Decoded {
    let mut codec = FtpCodec::new();
    let mut buf = BytesMut::new();
    let mut out = Decoded {
        items: Vec::new(),
        peak_buffer: 0,
        largest_read: 0,
    };
    let mut sizes = reads.iter().copied().map(|n| n.max(1)).cycle();
    let mut rest = input;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        out.largest_read = out.largest_read.max(n);
        out.peak_buffer = out.peak_buffer.max(buf.len());
        // Only I/O errors are decoder errors, and there is no I/O here.
        while let Some(item) = codec.decode(&mut buf).expect("the decoder's only errors are I/O errors") {
            out.items.push(item.map(|c| format!("{c:?}")).map_err(|e| format!("{e:?}")));
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(item)) => out.items.push(item.map(|c| format!("{c:?}")).map_err(|e| format!("{e:?}"))),
            Ok(None) => break,
            Err(e) => {
                out.items.push(Err(format!("at end of stream: {e:?}")));
                break;
            }
        }
    }
    out
}

/// Parses one command line (normally ending in `\n`) as the decoder does for each line, its
/// error wrapped the same way, so that the two can be compared.
pub fn parse_line(line: &[u8]) -> Result<String, String> {
    line_parser::parse(bytes::Bytes::copy_from_slice(line))
        .map(|c| format!("{c:?}"))
        .map_err(|e| format!("{:?}", ControlChanError::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_decodes_the_same_whatever_its_reads() {
        let input = b"USER anonymous\r\nREST abc\r\nNOOP\r\nPWD";
        let whole = decode_stream(input, &[]);
        assert_eq!(whole.items.len(), 4, "{whole:?}");
        assert!(whole.items[1].is_err() && whole.items[3].is_err(), "{whole:?}");
        for reads in [&[1][..], &[2, 7], &[0, 5, 1000]] {
            assert_eq!(decode_stream(input, reads).items, whole.items, "reads of {reads:?}");
        }
        assert_eq!(parse_line(b"NOOP\r\n"), whole.items[2]);
        assert_eq!(parse_line(b"REST abc\r\n"), whole.items[1]);
    }

    #[test]
    fn an_overlong_line_fed_byte_by_byte_keeps_the_buffer_bounded() {
        let input = [vec![b'A'; 3 * MAX_LINE_LEN], b"\r\nNOOP\r\n".to_vec()].concat();
        let d = decode_stream(&input, &[1]);
        assert!(d.peak_buffer <= MAX_LINE_LEN + 1, "{}", d.peak_buffer);
        assert_eq!(d.items.len(), 2, "{:?}", d.items);
        assert_eq!(d.items[1].as_deref(), Ok("Noop"));
    }
}
