//! The lexer: turns expression text into tokens with byte spans.

use super::ast::Span;
use super::{ExprError, ExprErrorKind};

/// One lexical token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Num(f32),
    Name(String),
    /// `$n`, with `n >= 1`.
    Band(usize),
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Caret,
    Bang,
    Lt,
    Le,
    Gt,
    Ge,
    EqEq,
    Ne,
    AndAnd,
    OrOr,
    Eof,
}

/// A token and where it sits in the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Span,
}

impl Tok {
    /// How error messages name this token.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Num(v) => format!("number {}", super::print::literal(*v)),
            Tok::Name(n) => format!("name '{n}'"),
            Tok::Band(i) => format!("band '${i}'"),
            Tok::Eof => "end of input".to_string(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Comma => ",",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Caret => "^",
            Tok::Bang => "!",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Num(_) | Tok::Name(_) | Tok::Band(_) | Tok::Eof => "",
        }
    }
}

/// Lexes all of `text`; the last token is always [`Tok::Eof`].
pub(crate) fn lex(text: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let two = |second: u8| bytes.get(i + 1) == Some(&second);
        let (tok, len) = match c {
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b',' => (Tok::Comma, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'/' => (Tok::Slash, 1),
            b'^' => (Tok::Caret, 1),
            b'<' if two(b'=') => (Tok::Le, 2),
            b'<' => (Tok::Lt, 1),
            b'>' if two(b'=') => (Tok::Ge, 2),
            b'>' => (Tok::Gt, 1),
            b'=' if two(b'=') => (Tok::EqEq, 2),
            b'!' if two(b'=') => (Tok::Ne, 2),
            b'!' => (Tok::Bang, 1),
            b'&' if two(b'&') => (Tok::AndAnd, 2),
            b'|' if two(b'|') => (Tok::OrOr, 2),
            b'=' | b'&' | b'|' => {
                let c = c as char;
                let hint = format!("{c}{c}");
                return Err(ExprError::at(
                    ExprErrorKind::UnexpectedChar,
                    text,
                    start,
                    format!("unexpected character '{c}'; did you mean '{hint}'?"),
                ));
            }
            b'0'..=b'9' | b'.' => lex_number(text, start)?,
            b'$' => lex_band(text, start)?,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let len = bytes[start..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                (Tok::Name(text[start..start + len].to_string()), len)
            }
            _ => {
                let ch = text[start..].chars().next().unwrap_or('?');
                return Err(ExprError::at(
                    ExprErrorKind::UnexpectedChar,
                    text,
                    start,
                    format!("unexpected character '{}'", ch.escape_default()),
                ));
            }
        };
        i = start + len;
        tokens.push(Token {
            tok,
            span: Span::new(start, i),
        });
    }
    tokens.push(Token {
        tok: Tok::Eof,
        span: Span::new(bytes.len(), bytes.len()),
    });
    Ok(tokens)
}

/// Lexes a number literal starting at `start`; returns the token and its length.
fn lex_number(text: &str, start: usize) -> Result<(Tok, usize), ExprError> {
    let bytes = text.as_bytes();
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut i = start;
    let int_digits = digits(i);
    i += int_digits;
    let mut frac_digits = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = digits(i);
        i += frac_digits;
    }
    let mut well_formed = int_digits + frac_digits > 0;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = digits(i);
        i += exp_digits;
        well_formed &= exp_digits > 0;
    }
    // A literal glued to letters, digits, dots or `_` (`2x`, `1.2.3`) is one bad number.
    let glued = bytes[i..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'.')
        .count();
    if glued > 0 {
        well_formed = false;
        i += glued;
    }
    let literal = &text[start..i];
    if !well_formed {
        return Err(ExprError::at(
            ExprErrorKind::BadNumber,
            text,
            start,
            format!("invalid number '{literal}'"),
        ));
    }
    match literal.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok((Tok::Num(v), i - start)),
        _ => Err(ExprError::at(
            ExprErrorKind::BadNumber,
            text,
            start,
            format!("number '{literal}' is out of range for f32"),
        )),
    }
}

/// Lexes `$n` starting at `start` (the `$`).
fn lex_band(text: &str, start: usize) -> Result<(Tok, usize), ExprError> {
    let bytes = text.as_bytes();
    let n = bytes[start + 1..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    let body = &text[start + 1..start + 1 + n];
    let err = |message: String| {
        Err(ExprError::at(
            ExprErrorKind::BadBandIndex,
            text,
            start,
            message,
        ))
    };
    if body.is_empty() {
        return err("expected a band index after '$'".to_string());
    }
    if !body.bytes().all(|b| b.is_ascii_digit()) {
        return err(format!("invalid band index '${body}'"));
    }
    match body.parse::<usize>() {
        Ok(0) => err("band indices start at 1 ('$1' is the first band)".to_string()),
        Ok(index) if index <= u32::MAX as usize => Ok((Tok::Band(index), n + 1)),
        _ => err(format!("band index '${body}' is too large")),
    }
}
