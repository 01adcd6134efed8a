//! The memory-bandwidth limit of this machine, STREAM-style: copy (`b = a`) and triad
//! (`a = b + s·c`) over arrays far larger than the caches, on every core, best of several runs.

use std::time::Instant;

use rayon::prelude::*;

/// Measured bandwidth in bytes per second (bytes read plus bytes written).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bandwidth {
    pub copy_bytes_per_s: f64,
    pub triad_bytes_per_s: f64,
}

const CHUNK: usize = 1 << 16;

/// Measures copy and triad over `len` `f32` elements per array, best of `reps` runs.
pub fn measure(len: usize, reps: usize) -> Bandwidth {
    let a: Vec<f32> = (0..len).map(|i| i as f32).collect();
    let mut b = vec![0.0f32; len];
    let c = vec![0.5f32; len];
    let mut out = vec![0.0f32; len];
    let mut best_copy = f64::INFINITY;
    let mut best_triad = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        b.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .for_each(|(b, a)| b.copy_from_slice(a));
        best_copy = best_copy.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        out.par_chunks_mut(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .zip(c.par_chunks(CHUNK))
            .for_each(|((o, b), c)| {
                for ((o, &b), &c) in o.iter_mut().zip(b).zip(c) {
                    *o = b + 3.0 * c;
                }
            });
        best_triad = best_triad.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&out);
    let bytes = (len * 4) as f64;
    Bandwidth {
        copy_bytes_per_s: 2.0 * bytes / best_copy,
        triad_bytes_per_s: 3.0 * bytes / best_triad,
    }
}
