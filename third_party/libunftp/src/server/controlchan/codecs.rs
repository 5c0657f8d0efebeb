use super::{Reply, command::Command, error::ControlChanError, line_parser};

use super::error::ControlChanErrorKind;
use bytes::{Buf, BytesMut};
use std::io::Write;
use tokio_util::codec::{Decoder, Encoder};

// FTPCodec implements tokio's `Decoder` and `Encoder` traits for the control channel, that we'll
// use to decode FTP commands and encode their responses.
pub struct FtpCodec {
    // Stored index of the next index to examine for a '\n' character. This is used to optimize
    // searching. For example, if `decode` was called with `abc`, it would hold `3`, because that
    // is the next index to examine. The next time `decode` is called with `abcde\n`, we will only
    // look at `de\n` before returning.
    next_index: usize,
    // Set after a line grew past MAX_LINE_LEN without a '\n': its bytes are dropped as they
    // arrive, up to and including the next '\n'.
    discarding: bool,
}

/// Longest command line accepted, not counting its line feed (vsftpd uses the same 4 KiB). RFC
/// 959 sets no limit, but without one a client that never sends a newline makes the server
/// buffer without bound.
pub const MAX_LINE_LEN: usize = 4096;

impl FtpCodec {
    pub fn new() -> Self {
        FtpCodec {
            next_index: 0,
            discarding: false,
        }
    }
}

impl Decoder for FtpCodec {
    // A line that does not parse is an item, not a decoder error: tokio-util's `FramedRead` ends
    // the stream after the first `Err` the decoder returns, which would close the session on a
    // mere `REST abc`. Only I/O errors are `Self::Error`.
    type Item = Result<Command, ControlChanError>;
    type Error = ControlChanError;

    // Here we decode the incoming bytes into a meaningful command. We'll split on newlines, and
    // parse the resulting line using `Command::parse()`. This method will be called by tokio.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if self.discarding {
            match buf.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    buf.advance(end + 1);
                    self.discarding = false;
                    self.next_index = 0;
                }
                None => {
                    buf.clear();
                    return Ok(None);
                }
            }
        }
        if let Some(newline_offset) = buf[self.next_index..].iter().position(|b| *b == b'\n') {
            let newline_index = newline_offset + self.next_index;
            self.next_index = 0;
            if newline_index > MAX_LINE_LEN {
                buf.advance(newline_index + 1);
                return Ok(Some(Err(ControlChanErrorKind::LineTooLong.into())));
            }
            let line = without_telnet_commands(buf.split_to(newline_index + 1));
            Ok(Some(line_parser::parse(line).map_err(ControlChanError::from)))
        } else if buf.len() > MAX_LINE_LEN {
            // Answer now rather than when the newline finally comes (it may never come), and stop
            // holding the bytes.
            buf.clear();
            self.next_index = 0;
            self.discarding = true;
            Ok(Some(Err(ControlChanErrorKind::LineTooLong.into())))
        } else {
            self.next_index = buf.len();
            Ok(None)
        }
    }
}

/// The line with its Telnet commands removed (RFC 959 §4.1.3: the control connection speaks the
/// Telnet protocol; clients send `IAC IP IAC DM` before `ABOR`, RFC 854). `IAC IAC` is a
/// literal 0xFF; `IAC WILL/WONT/DO/DONT x` is three bytes; any other `IAC x` two. Without this,
/// the 0xFF bytes make the line invalid UTF-8, which ends the session.
fn without_telnet_commands(line: BytesMut) -> BytesMut {
    const IAC: u8 = 0xFF;
    if !line.contains(&IAC) {
        return line;
    }
    let mut out = BytesMut::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        match (line[i], line.get(i + 1)) {
            (IAC, Some(&IAC)) => {
                out.extend_from_slice(&[IAC]);
                i += 2;
            }
            (IAC, Some(251..=254)) => i += 3,
            (IAC, _) => i += 2,
            (b, _) => {
                out.extend_from_slice(&[b]);
                i += 1;
            }
        }
    }
    out
}

/// A reply text as one line: a CR or LF inside it (from a file name: a name can hold both, a
/// command cannot) becomes `?`, as `ls -q` shows it, so that no text can end a reply early or
/// forge another one.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        std::borrow::Cow::Owned(text.replace(['\r', '\n'], "?"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `"path"` for a 257 reply: embedded double quotes doubled (RFC 959 Appendix II).
pub(crate) fn quote_path(path: &str) -> String {
    format!("\"{}\"", path.replace('"', "\"\""))
}

impl Encoder<Reply> for FtpCodec {
    type Error = ControlChanError;

    // Here we encode the outgoing response
    fn encode(&mut self, reply: Reply, buf: &mut BytesMut) -> Result<(), Self::Error> {
        let mut buffer = vec![];
        match reply {
            Reply::None => {
                return Ok(());
            }
            Reply::CodeAndMsg { code, msg } => {
                let msg = one_line(&msg);
                if msg.is_empty() {
                    writeln!(buffer, "{}\r", code as u32)?;
                } else {
                    writeln!(buffer, "{} {}\r", code as u32, msg)?;
                }
            }
            Reply::MultiLine { code, lines } => {
                let mut lines: Vec<String> = lines.iter().map(|l| one_line(l).into_owned()).collect();
                // Get the last line since it needs to be preceded by the response code.
                let last_line = lines.pop().unwrap_or_default();

                // Lines starting with a digit should be indented
                for it in lines.iter_mut() {
                    if it.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                        it.insert(0, ' ');
                    }
                }
                if lines.is_empty() {
                    writeln!(buffer, "{} {}\r", code as u32, last_line)?;
                } else {
                    write!(buffer, "{}-{}\r\n{} {}\r\n", code as u32, lines.join("\r\n"), code as u32, last_line)?;
                }
            }
        }
        buf.extend(&buffer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ReplyCode;
    use super::*;

    #[tokio::test]
    async fn a_line_that_does_not_parse_does_not_end_the_command_stream() {
        use futures_util::StreamExt;
        use tokio_util::codec::FramedRead;

        let input: &[u8] = b"REST abc\r\nTYPE I\r\nNOOP\r\n";
        let items: Vec<_> = FramedRead::new(input, FtpCodec::new()).collect().await;

        assert_eq!(items.len(), 3, "every line is an item: {items:?}");
        let first = items[0].as_ref().expect("not a decoder (I/O) error");
        assert_eq!(first.as_ref().expect_err("REST abc does not parse").kind(), &ControlChanErrorKind::InvalidCommand);
        assert!(matches!(items[1], Ok(Ok(Command::Type))), "{:?}", items[1]);
        assert!(matches!(items[2], Ok(Ok(Command::Noop))), "{:?}", items[2]);
    }

    #[test]
    fn an_overlong_line_is_refused_as_soon_as_it_is_too_long_and_the_rest_of_it_dropped() {
        let mut codec = FtpCodec::new();
        let mut buf = BytesMut::new();
        // 64 MiB without a newline, in 64 KiB reads: the buffer never holds more than one read
        // past the limit, and the refusal comes once.
        let chunk = vec![b'A'; 64 * 1024];
        let mut refusals = 0;
        for _ in 0..1024 {
            buf.extend_from_slice(&chunk);
            if let Some(item) = codec.decode(&mut buf).expect("not an I/O error") {
                assert_eq!(item.expect_err("too long").kind(), &ControlChanErrorKind::LineTooLong);
                refusals += 1;
            }
            assert!(buf.len() <= MAX_LINE_LEN + chunk.len(), "buffer grew to {}", buf.len());
        }
        assert_eq!(refusals, 1);
        // The end of the long line, then a normal command: the session goes on.
        buf.extend_from_slice(b"AAAA\r\nNOOP\r\n");
        let next = codec.decode(&mut buf).expect("not an I/O error").expect("a full line");
        assert_eq!(next.expect("NOOP parses"), Command::Noop);
    }

    #[test]
    fn lines_up_to_the_limit_pass_and_a_complete_longer_line_is_refused() {
        let mut codec = FtpCodec::new();
        let name = "n".repeat(MAX_LINE_LEN - "MKD \r".len());
        let mut buf = BytesMut::from(format!("MKD {name}\r\nMKD {name}x\r\nNOOP\r\n").as_bytes());
        let first = codec.decode(&mut buf).expect("not an I/O error").expect("a full line");
        assert!(matches!(first, Ok(Command::Mkd { .. })), "{first:?}");
        let second = codec.decode(&mut buf).expect("not an I/O error").expect("a full line");
        assert_eq!(second.expect_err("one byte too long").kind(), &ControlChanErrorKind::LineTooLong);
        let third = codec.decode(&mut buf).expect("not an I/O error").expect("a full line");
        assert_eq!(third.expect("NOOP parses"), Command::Noop);
    }

    #[test]
    fn telnet_commands_are_removed_from_command_lines() {
        let mut codec = FtpCodec::new();
        // IAC IP IAC DM before ABOR, as lftp sends it; IAC WILL ECHO inside NOOP.
        let mut buf = BytesMut::from(&b"\xff\xf4\xff\xf2ABOR\r\nNO\xff\xfb\x01OP\r\n"[..]);
        let first = codec.decode(&mut buf).expect("not an I/O error").expect("a line");
        assert_eq!(first.expect("ABOR"), Command::Abor);
        let second = codec.decode(&mut buf).expect("not an I/O error").expect("a line");
        assert_eq!(second.expect("NOOP"), Command::Noop);
        assert_eq!(&without_telnet_commands(BytesMut::from(&b"a\xff\xffb\xff"[..]))[..], b"a\xffb");
    }

    #[test]
    fn reply_texts_never_carry_a_raw_cr_or_lf() {
        let mut codec = FtpCodec::new();
        let mut buf = BytesMut::new();
        codec
            .encode(Reply::new_with_string(ReplyCode::FileError, "no such file: a\r\n230 fake".to_string()), &mut buf)
            .unwrap();
        codec
            .encode(Reply::new_multiline(ReplyCode::SystemStatus, vec!["x\ny", "end"]), &mut buf)
            .unwrap();
        assert_eq!(buf, "550 no such file: a??230 fake\r\n211-x?y\r\n211 end\r\n".as_bytes());
    }

    #[test]
    fn paths_in_257_replies_are_quoted_with_inner_quotes_doubled() {
        assert_eq!(quote_path("/a\"b/c"), "\"/a\"\"b/c\"");
        assert_eq!(quote_path("/"), "\"/\"");
    }

    #[test]
    fn encode_multiline_reply_with_blank_line_does_not_panic() {
        let mut codec = FtpCodec::new();
        let mut buf = BytesMut::new();
        let reply = Reply::new_multiline(ReplyCode::HelpMessage, vec!["Usage: foo", "", "Options:"]);

        codec.encode(reply, &mut buf).unwrap();

        assert_eq!(buf, "214-Usage: foo\r\n\r\n214 Options:\r\n".as_bytes());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Feeds `input` to a fresh codec in `chunk`-byte reads, as a socket would deliver it,
        /// and returns the items and the largest the buffer ever grew.
        fn decode_in_chunks(input: &[u8], chunk: usize) -> (Vec<Result<Command, ControlChanError>>, usize) {
            let mut codec = FtpCodec::new();
            let mut buf = BytesMut::new();
            let mut items = Vec::new();
            let mut peak = 0;
            for piece in input.chunks(chunk.max(1)) {
                buf.extend_from_slice(piece);
                peak = peak.max(buf.len());
                while let Some(item) = codec.decode(&mut buf).expect("only I/O errors are decoder errors") {
                    items.push(item);
                }
            }
            (items, peak)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Arbitrary bytes never panic the decoder, never make it hold much more than the
            /// line limit, and give at most one item per line feed.
            #[test]
            fn arbitrary_input_is_bounded(input in proptest::collection::vec(any::<u8>(), 0..20_000), chunk in 1usize..9000) {
                let (items, peak) = decode_in_chunks(&input, chunk);
                prop_assert!(peak <= MAX_LINE_LEN + chunk, "buffer grew to {peak}");
                let lines = input.iter().filter(|b| **b == b'\n').count();
                prop_assert!(items.len() <= lines + input.len() / MAX_LINE_LEN + 1);
            }

            /// However a well-formed command stream is cut into reads, every command comes out,
            /// in order, and garbage lines between them do not stop the ones after.
            #[test]
            fn commands_survive_any_split_and_garbage(
                names in proptest::collection::vec("[a-zA-Z0-9 ._-]{1,40}", 1..20),
                garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..100), 1..20),
                chunk in 1usize..64,
            ) {
                let mut input = Vec::new();
                for (name, junk) in names.iter().zip(garbage.iter().cycle()) {
                    input.extend_from_slice(junk);
                    input.extend_from_slice(b"\r\n");
                    input.extend_from_slice(format!("MKD {name}\r\n").as_bytes());
                }
                let (items, _) = decode_in_chunks(&input, chunk);
                let made: Vec<String> = items
                    .into_iter()
                    .filter_map(|i| match i {
                        Ok(Command::Mkd { path }) => Some(path.to_string_lossy().into_owned()),
                        _ => None,
                    })
                    .collect();
                // A garbage line can itself be a valid MKD; the real ones are a subsequence, in order.
                let mut want = names.iter();
                let mut next = want.next();
                for got in &made {
                    if Some(got) == next {
                        next = want.next();
                    }
                }
                prop_assert!(next.is_none(), "lost a command: {made:?} for {names:?}");
            }
        }
    }
}
