//! Capturing what a test's subscriber logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A log writer that keeps everything written to it; clones share the same buffer, so a
/// subscriber can take `move || captured.clone()` as its writer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("captured log").clone()).expect("UTF-8 log")
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("captured log").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
