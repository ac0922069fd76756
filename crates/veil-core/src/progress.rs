use crate::ImageStatus;

/// Events a library sends while it works; the CLI turns them into a progress bar or log lines.
/// Libraries never print.
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    /// Work is about to start on `total` images.
    Started { total: u64 },
    /// `count` more records than `Started` announced (the images inside a dataset archive, known
    /// once the archive is read).
    Queued { count: u64 },
    /// One image is finished (whatever its status).
    ImageDone {
        path: String,
        status: ImageStatus,
        detections: usize,
        /// Failure reason when `status` is failed.
        error: Option<String>,
    },
    /// A non-fatal notice worth showing the user (e.g. a fallback that was taken).
    Notice { message: String },
    /// Provisioning (download/convert) of a runtime or model file.
    Provision { message: String },
}

/// Receiver of progress events; must be callable from several worker threads.
pub trait ProgressSink: Send + Sync {
    fn event(&self, event: ProgressEvent);
}

impl<F: Fn(ProgressEvent) + Send + Sync> ProgressSink for F {
    fn event(&self, event: ProgressEvent) {
        self(event)
    }
}
