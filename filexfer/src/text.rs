//! Showing text that came from the network (file names, server replies) to a person: control
//! characters are escaped, so a hostile name cannot move the cursor, recolour the terminal or
//! fake extra lines.

use std::fmt::Write;

/// `s` with every control character (C0, DEL, C1) written as `\xNN`; everything else as is.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_the_rest_kept() {
        assert_eq!(printable("a b\tc"), "a b\\x09c");
        assert_eq!(printable("evil\r\n226 ok"), "evil\\x0d\\x0a226 ok");
        assert_eq!(printable("\u{1b}[2J"), "\\x1b[2J");
        assert_eq!(printable("\u{9b}31m"), "\\x9b31m");
        assert_eq!(printable("ünïcödé 文件"), "ünïcödé 文件");
        assert_eq!(printable(""), "");
    }
}
