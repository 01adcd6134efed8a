//! Rows in PostgreSQL's binary `COPY` format, for bulk inserts (`COPY … FROM STDIN (FORMAT
//! binary)`): a header, then per row its field count and each field as a length-prefixed
//! value in the type's binary (send/recv) representation, then a trailer.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::Result;

/// How much COPY data is encoded before it is sent.
const CHUNK_BYTES: usize = 1 << 20;

/// Runs `statement` (a `COPY … FROM STDIN (FORMAT binary)`) on `conn`, writing one row per
/// item with `write` and sending the data in chunks of about [`CHUNK_BYTES`] while the rest
/// is encoded.
pub(crate) async fn copy_in<T>(
    conn: &mut PgConnection,
    statement: &str,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut CopyRows, T),
) -> Result<()> {
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut rows = CopyRows::new();
    for item in items {
        write(&mut rows, item);
        if rows.buf.len() >= CHUNK_BYTES {
            copy.send(rows.take()).await?;
        }
    }
    copy.send(rows.finish()).await?;
    copy.finish().await?;
    Ok(())
}

/// Signature, flags (no OIDs) and header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A buffer of binary COPY data; [`CopyRows::take`] hands out what is written so far, so a
/// large copy can be sent in chunks while it is being encoded ([`copy_in`]).
pub(crate) struct CopyRows {
    buf: Vec<u8>,
    fields_left: u16,
}

impl CopyRows {
    /// A buffer that starts with the format's header.
    pub(crate) fn new() -> Self {
        Self {
            buf: HEADER.to_vec(),
            fields_left: 0,
        }
    }

    /// Starts a row of `fields` fields; exactly that many field calls (`int4`, `uuid`,
    /// `text`, `raw`, `null`) must follow.
    pub(crate) fn row(&mut self, fields: u16) -> &mut Self {
        debug_assert_eq!(self.fields_left, 0, "the previous row is incomplete");
        self.fields_left = fields;
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self
    }

    /// A field given in its type's binary representation (e.g. EWKB for `geometry`).
    pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        debug_assert!(self.fields_left > 0, "more fields than the row declared");
        self.fields_left -= 1;
        // The largest field written is a footprint, whose ring `model::footprint_ewkb` caps at
        // MAX_RING_POINTS (16 MiB encoded).
        let len = i32::try_from(bytes.len()).expect("a COPY field is under 2 GiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self
    }

    /// An `integer` (int4) field.
    pub(crate) fn int4(&mut self, v: i32) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// A `uuid` field.
    pub(crate) fn uuid(&mut self, v: &Uuid) -> &mut Self {
        self.raw(v.as_bytes())
    }

    /// A `text` field (UTF-8, as the database encoding is).
    pub(crate) fn text(&mut self, v: &str) -> &mut Self {
        self.raw(v.as_bytes())
    }

    /// A NULL field.
    pub(crate) fn null(&mut self) -> &mut Self {
        debug_assert!(self.fields_left > 0, "more fields than the row declared");
        self.fields_left -= 1;
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// Takes what is written so far, leaving the buffer empty (rows continue after it).
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Appends the trailer and takes the rest.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        debug_assert_eq!(self.fields_left, 0, "the last row is incomplete");
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_its_field_count_then_length_prefixed_values() {
        let mut rows = CopyRows::new();
        rows.row(3).int4(-2).text("ab").null();
        let bytes = rows.finish();
        let mut want = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // flags, extension length
        want.extend_from_slice(&[0, 3]); // three fields
        want.extend_from_slice(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe]); // int4 -2
        want.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']); // text
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // NULL
        want.extend_from_slice(&[0xff, 0xff]); // trailer
        assert_eq!(bytes, want);
    }

    #[test]
    fn taking_in_chunks_gives_the_same_stream() {
        let id = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let mut whole = CopyRows::new();
        let mut chunked = CopyRows::new();
        let mut stream = Vec::new();
        for i in 0..3 {
            whole.row(2).uuid(&id).int4(i);
            chunked.row(2).uuid(&id).int4(i);
            stream.extend(chunked.take());
        }
        stream.extend(chunked.finish());
        assert_eq!(stream, whole.finish());
    }
}
