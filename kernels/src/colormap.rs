//! Colormaps: value → RGBA through a 256-entry lookup table built from colour stops.

use rayon::prelude::*;

use crate::error::{check_len, KernelError};
use crate::plane::PIXELS_PER_TASK;

/// One colour stop: a position in `[0, 1]` and an RGBA colour.
pub type Stop = (f32, [u8; 4]);

const fn rgb(hex: u32) -> [u8; 4] {
    [(hex >> 16) as u8, (hex >> 8) as u8, hex as u8, 255]
}

const VIRIDIS: [u32; 9] = [
    0x440154, 0x472d7b, 0x3b528b, 0x2c728e, 0x21918c, 0x28ae80, 0x5ec962, 0xaddc30, 0xfde725,
];
const RDYLGN: [u32; 11] = [
    0xa50026, 0xd73027, 0xf46d43, 0xfdae61, 0xfee08b, 0xffffbf, 0xd9ef8b, 0xa6d96a, 0x66bd63,
    0x1a9850, 0x006837,
];

/// A 256-entry colour lookup table; nodata maps to transparent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Colormap {
    lut: Vec<[u8; 4]>,
}

impl Colormap {
    /// Names of the built-in colormaps.
    pub const NAMES: [&'static str; 3] = ["viridis", "rdylgn", "greys"];

    /// A built-in colormap by name (`viridis`, `rdylgn`, `greys`).
    pub fn named(name: &str) -> Result<Self, KernelError> {
        let even = |hexes: &[u32]| -> Vec<Stop> {
            let last = (hexes.len() - 1) as f32;
            hexes
                .iter()
                .enumerate()
                .map(|(i, &h)| (i as f32 / last, rgb(h)))
                .collect()
        };
        let stops = match name {
            "viridis" => even(&VIRIDIS),
            "rdylgn" => even(&RDYLGN),
            "greys" => vec![(0.0, rgb(0x000000)), (1.0, rgb(0xffffff))],
            other => {
                return Err(KernelError::InvalidParam {
                    name: "colormap",
                    reason: format!(
                        "unknown colormap {other:?}; known: {}",
                        Self::NAMES.join(", ")
                    ),
                })
            }
        };
        Self::from_stops(&stops)
    }

    /// A colormap interpolated linearly between user stops (positions ascending in `[0, 1]`).
    pub fn from_stops(stops: &[Stop]) -> Result<Self, KernelError> {
        let bad = |reason: &str| KernelError::InvalidParam {
            name: "colormap stops",
            reason: reason.into(),
        };
        if stops.len() < 2 {
            return Err(bad("need at least two stops"));
        }
        if stops
            .windows(2)
            .any(|w| w[0].0.partial_cmp(&w[1].0) != Some(std::cmp::Ordering::Less))
        {
            return Err(bad("stop positions must be strictly ascending"));
        }
        if stops[0].0 != 0.0 || stops[stops.len() - 1].0 != 1.0 {
            return Err(bad("stop positions must start at 0 and end at 1"));
        }
        let lut = (0..256)
            .map(|i| {
                let t = i as f32 / 255.0;
                let k = stops.windows(2).position(|w| t <= w[1].0).unwrap_or(0);
                let ((t0, c0), (t1, c1)) = (stops[k], stops[k + 1]);
                let f = (t - t0) / (t1 - t0);
                let mut c = [0u8; 4];
                for ch in 0..4 {
                    let v = f32::from(c0[ch]) + f * (f32::from(c1[ch]) - f32::from(c0[ch]));
                    c[ch] = v.round().clamp(0.0, 255.0) as u8;
                }
                c
            })
            .collect();
        Ok(Self { lut })
    }

    /// The colour of lookup-table entry `i`.
    pub fn entry(&self, i: u8) -> [u8; 4] {
        self.lut[usize::from(i)]
    }

    /// The colour of one value rescaled from `[vmin, vmax]`; nodata is transparent.
    #[inline(always)]
    pub fn color(&self, v: f32, vmin: f32, vmax: f32) -> [u8; 4] {
        if v.is_nan() {
            return [0, 0, 0, 0];
        }
        let t = ((v - vmin) / (vmax - vmin)).clamp(0.0, 1.0);
        self.lut[(t * 255.0).round() as usize]
    }

    /// Colours `data` into `rgba` (4 bytes per pixel).
    pub fn apply(
        &self,
        data: &[f32],
        vmin: f32,
        vmax: f32,
        rgba: &mut [u8],
    ) -> Result<(), KernelError> {
        if !(vmin.is_finite() && vmax.is_finite() && vmin < vmax) {
            return Err(KernelError::InvalidParam {
                name: "rescale",
                reason: format!("need finite min < max, got [{vmin}, {vmax}]"),
            });
        }
        check_len("colormap output", data.len() * 4, rgba.len())?;
        rgba.par_chunks_mut(PIXELS_PER_TASK * 4)
            .zip(data.par_chunks(PIXELS_PER_TASK))
            .for_each(|(o, d)| {
                for (o, &v) in o.chunks_exact_mut(4).zip(d) {
                    o.copy_from_slice(&self.color(v, vmin, vmax));
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_middle_match_the_published_colours() {
        let c = Colormap::named("viridis").expect("built in");
        assert_eq!(c.color(0.0, 0.0, 1.0), [0x44, 0x01, 0x54, 255]);
        assert_eq!(c.color(1.0, 0.0, 1.0), [0xfd, 0xe7, 0x25, 255]);
        // 0.5 → entry 128 of 255, just past the 0x21918c stop.
        let mid = c.color(0.5, 0.0, 1.0);
        assert!(mid[0].abs_diff(0x21) <= 2 && mid[1].abs_diff(0x91) <= 2);
    }

    #[test]
    fn nodata_is_transparent_and_values_clamp() {
        let c = Colormap::named("greys").expect("built in");
        let mut out = [0u8; 12];
        c.apply(&[f32::NAN, -5.0, 5.0], 0.0, 1.0, &mut out)
            .expect("valid");
        assert_eq!(&out[0..4], &[0, 0, 0, 0]);
        assert_eq!(&out[4..8], &[0, 0, 0, 255]);
        assert_eq!(&out[8..12], &[255, 255, 255, 255]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(Colormap::named("jet").is_err());
        assert!(Colormap::from_stops(&[(0.0, [0; 4])]).is_err());
        let c = Colormap::named("rdylgn").expect("built in");
        assert!(c.apply(&[0.0], 1.0, 1.0, &mut [0; 4]).is_err());
    }
}
