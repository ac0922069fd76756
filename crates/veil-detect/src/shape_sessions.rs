//! Inference sessions kept per network input shape, for GPUs.
//!
//! ONNX Runtime's CUDA provider (with cuDNN 9) rebuilds every convolution's cuDNN execution plan
//! whenever the input shape of a session changes, and keeps no plan for the shape it left
//! (`Conv::UpdateState` compares with the last shape only). The default policy alternates
//! shapes on every image (a coarse pass, then fine tiles, in batches of varying size), so one
//! session per worker spent its time planning while the GPU idled: on an H200, 24 copies of one
//! photo ran at 12.3 images/s with `--scales single` (one shape) and below 0.5 images/s with the
//! default passes (benches/README, "CUDA on the device machine").
//!
//! Here each shape gets a session of its own, shared by every detect thread behind a lock, up to
//! a capacity (the least recently used is dropped), and batches are padded with blank inputs up
//! to a power of two so that batch sizes take few shapes. Answers do not change: the same network
//! runs on the same inputs, and a padded input's outputs are dropped.

use std::sync::{Arc, Mutex};

use ort::session::Session;

use crate::DetectError;

/// Makes a new session for the device the run settled on.
pub type SessionFactory = Box<dyn Fn() -> Result<Session, DetectError> + Send + Sync>;

/// The input shape `[N, C, H, W]` a batch of `n` runs as: `n` rounded up to a power of two.
pub fn padded_shape(shape: &[usize]) -> [usize; 4] {
    let at = |i: usize| shape.get(i).copied().unwrap_or(1);
    [at(0).max(1).next_power_of_two(), at(1), at(2), at(3)]
}

/// Sessions by input shape (see the module documentation).
pub struct ShapeSessions {
    factory: SessionFactory,
    capacity: usize,
    pool: Mutex<Pool>,
}

#[derive(Default)]
struct Pool {
    clock: u64,
    created: usize,
    entries: Vec<([usize; 4], Arc<Mutex<Session>>, u64)>,
}

impl std::fmt::Debug for ShapeSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("ShapeSessions")
            .field("capacity", &self.capacity)
            .field(
                "shapes",
                &pool.entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ShapeSessions {
    /// Up to `capacity` sessions (at least one) made by `factory`.
    pub fn new(factory: SessionFactory, capacity: usize) -> Self {
        Self {
            factory,
            capacity: capacity.max(1),
            pool: Mutex::new(Pool::default()),
        }
    }

    /// The session for `shape`, made (and the least recently used dropped) if there is none.
    pub fn session_for(&self, shape: [usize; 4]) -> Result<Arc<Mutex<Session>>, DetectError> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.clock += 1;
        let now = pool.clock;
        if let Some(e) = pool.entries.iter_mut().find(|e| e.0 == shape) {
            e.2 = now;
            return Ok(Arc::clone(&e.1));
        }
        if pool.entries.len() >= self.capacity {
            // A thread still running the dropped session keeps it alive until it is done.
            if let Some(oldest) = (0..pool.entries.len()).min_by_key(|&i| pool.entries[i].2) {
                pool.entries.swap_remove(oldest);
            }
        }
        let session = Arc::new(Mutex::new((self.factory)()?));
        pool.created += 1;
        pool.entries.push((shape, Arc::clone(&session), now));
        Ok(session)
    }

    /// Sessions made so far (more than the capacity when shapes were evicted and came back).
    pub fn created(&self) -> usize {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).created
    }

    /// The shapes that have a session now.
    pub fn shapes(&self) -> Vec<[usize; 4]> {
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.entries.iter().map(|e| e.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_padded_to_a_power_of_two() {
        assert_eq!(padded_shape(&[1, 3, 64, 96]), [1, 3, 64, 96]);
        assert_eq!(padded_shape(&[3, 3, 64, 96]), [4, 3, 64, 96]);
        assert_eq!(padded_shape(&[8, 3, 64, 96]), [8, 3, 64, 96]);
        assert_eq!(padded_shape(&[9, 3, 64, 96]), [16, 3, 64, 96]);
    }
}
