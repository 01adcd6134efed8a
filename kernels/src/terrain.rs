//! Terrain kernels over a DEM: hillshade, slope and aspect from Horn's 3×3 gradient, matching
//! GDAL's `gdaldem` (3.6).
//!
//! Window layout (row 0 is the northern row, as in a north-up raster):
//!
//! ```text
//!   w0 w1 w2
//!   w3 w4 w5
//!   w6 w7 w8
//! ```
//!
//! Horn's sums, computed in `f32` in exactly gdaldem's order so that flat areas and near-flat
//! aspects agree with it to the bit:
//! `gx = (w0 + 2·w3 + w6) - (w2 + 2·w5 + w8)` (west minus east) and
//! `gy = (w6 + 2·w7 + w8) - (w0 + 2·w1 + w2)` (south minus north). Then, in `f64`,
//! `-∂z/∂east = gx · z_factor / (8 · pixel_width · scale)` and
//! `-∂z/∂north = gy · z_factor / (8 · pixel_height · scale)`, the downhill direction.
//!
//! - **slope** = `atan(|∇z|)` in degrees, or `100 · |∇z|` in percent;
//! - **aspect** = the compass direction the slope faces, degrees clockwise from north in
//!   `[0, 360)`; `NaN` where the surface is exactly flat (`gx = gy = 0`; gdaldem writes -9999
//!   there unless `-zero_for_flat`);
//! - **hillshade** = `1 + 254 · max(0, cos θ)` in `[1, 255]`, unrounded, where θ is the angle
//!   between the surface normal and the sun at `azimuth_deg` (clockwise from north) and
//!   `altitude_deg` above the horizon; gdaldem rounds the same value into a byte and uses 0 as
//!   nodata.
//!
//! Any `NaN` in the 3×3 window gives `NaN` out (gdaldem's default without `-compute_edges`), and
//! so does a gradient that overflows; no `±Inf` is ever written.
//!
//! One deliberate difference from gdaldem: gdaldem's aspect ignores the pixel size, ours uses the
//! true gradient, so the two agree for square pixels only (`pixel_width == pixel_height`).
//! gdaldem's `slope` has no `-z`; ours applies `z_factor` to every kernel.

use rayon::prelude::*;

use crate::convolve::inner_dims;
use crate::error::{check_len, KernelError};
use crate::plane::{rows_per_task, Plane};

/// The halo every terrain kernel needs on each side.
pub const TERRAIN_HALO_PX: usize = 1;

/// Geometry and scaling of a DEM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TerrainParams {
    /// Pixel width in CRS units (absolute value of geotransform[1]).
    pub pixel_width: f64,
    /// Pixel height in CRS units (absolute value of geotransform[5]); rows run north to south.
    pub pixel_height: f64,
    /// Vertical exaggeration (gdaldem's `-z`).
    pub z_factor: f64,
    /// Ratio of horizontal CRS units to elevation units (gdaldem's `-s`): 1 when both are
    /// metres, 111120 for a DEM in metres on a geographic (degree) grid.
    pub scale: f64,
}

impl TerrainParams {
    /// Pixel sizes with `z_factor = 1` and `scale = 1`.
    pub fn new(pixel_width: f64, pixel_height: f64) -> Self {
        Self {
            pixel_width,
            pixel_height,
            z_factor: 1.0,
            scale: 1.0,
        }
    }

    fn validate(&self) -> Result<(), KernelError> {
        for (name, v) in [
            ("pixel_width", self.pixel_width),
            ("pixel_height", self.pixel_height),
            ("z_factor", self.z_factor),
            ("scale", self.scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(KernelError::InvalidParam {
                    name,
                    reason: format!("must be finite and positive, got {v}"),
                });
            }
        }
        Ok(())
    }

    /// Multipliers turning Horn's sums into `(-∂z/∂east, -∂z/∂north)`, `f64`.
    fn gradient_factors(&self) -> (f64, f64) {
        let k = self.z_factor / 8.0;
        (
            k / (self.pixel_width * self.scale),
            k / (self.pixel_height * self.scale),
        )
    }
}

/// Units of [`slope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlopeUnits {
    /// Angle from the horizontal, `[0, 90)`.
    Degrees,
    /// Rise over run × 100, `[0, ∞)`.
    Percent,
}

/// Horn's sums of a 3×3 window, `f32`, in gdaldem's order: `(west - east, south - north)`.
#[inline(always)]
fn horn_sums(w: &[f32; 9]) -> (f32, f32) {
    let gx = (w[0] + w[3] + w[3] + w[6]) - (w[2] + w[5] + w[5] + w[8]);
    let gy = (w[6] + w[7] + w[7] + w[8]) - (w[0] + w[1] + w[1] + w[2]);
    (gx, gy)
}

/// Runs `f` on every 3×3 window of `dem` whose centre is in the inner window, writing `out`.
///
/// `f` receives Horn's sums `(gx, gy)`; the driver writes `NaN` instead when the centre is
/// `NaN` or a sum is not finite (which covers every `NaN` among the 8 neighbours, since each of
/// them enters at least one sum), so `f` only sees usable data.
fn stencil3<F>(dem: Plane<'_>, halo_px: usize, out: &mut [f32], f: F) -> Result<(), KernelError>
where
    F: Fn(f32, f32) -> f32 + Sync,
{
    if halo_px < TERRAIN_HALO_PX {
        return Err(KernelError::InvalidParam {
            name: "halo_px",
            reason: format!("terrain kernels need a halo of at least 1 px, got {halo_px}"),
        });
    }
    let (width, height) = inner_dims(&dem, halo_px)?;
    check_len("terrain output", width * height, out.len())?;
    if width == 0 || height == 0 {
        return Ok(());
    }
    // The 3×3 window of output (x, y) starts at input (x + skip, y + skip).
    let skip = halo_px - 1;
    let span = width + 2;
    let rows = rows_per_task(width);
    out.par_chunks_mut(width * rows)
        .enumerate()
        .for_each(|(task, chunk)| {
            for (i, out_row) in chunk.chunks_exact_mut(width).enumerate() {
                let y = task * rows + i;
                let top = &dem.row(y + skip)[skip..skip + span];
                let mid = &dem.row(y + skip + 1)[skip..skip + span];
                let bot = &dem.row(y + skip + 2)[skip..skip + span];
                for (x, o) in out_row.iter_mut().enumerate() {
                    let w = [
                        top[x],
                        top[x + 1],
                        top[x + 2],
                        mid[x],
                        mid[x + 1],
                        mid[x + 2],
                        bot[x],
                        bot[x + 1],
                        bot[x + 2],
                    ];
                    let (gx, gy) = horn_sums(&w);
                    *o = if w[4].is_nan() || !gx.is_finite() || !gy.is_finite() {
                        f32::NAN
                    } else {
                        f(gx, gy)
                    };
                }
            }
        });
    Ok(())
}

/// Shaded relief of `dem` (with a halo of `halo_px ≥ 1`) into `out`, in gdaldem's 1..=255
/// scale, unrounded: `1 + 254 · max(0, cos θ)`.
///
/// `azimuth_deg` is the sun's direction clockwise from north (gdaldem's default 315),
/// `altitude_deg` its elevation above the horizon (default 45).
pub fn hillshade(
    dem: Plane<'_>,
    halo_px: usize,
    p: &TerrainParams,
    azimuth_deg: f64,
    altitude_deg: f64,
    out: &mut [f32],
) -> Result<(), KernelError> {
    p.validate()?;
    for (name, v) in [("azimuth_deg", azimuth_deg), ("altitude_deg", altitude_deg)] {
        if !v.is_finite() {
            return Err(KernelError::InvalidParam {
                name,
                reason: format!("must be finite, got {v}"),
            });
        }
    }
    // gdaldem's closed form, one square root per pixel: with x = -∂z/∂east and y = -∂z/∂north
    // (z factor included), the sun vector (sin az·cos alt, cos az·cos alt, sin alt) and the
    // normal (x, y, 1) / sqrt(1 + x² + y²),
    //   cos θ = (sin alt + x·sin az·cos alt + y·cos az·cos alt) / sqrt(1 + x² + y²).
    let (fx, fy) = p.gradient_factors();
    let (sin_alt, cos_alt) = altitude_deg.to_radians().sin_cos();
    let (sin_az, cos_az) = azimuth_deg.to_radians().sin_cos();
    let num0 = 254.0 * sin_alt;
    let cx = 254.0 * sin_az * cos_alt;
    let cy = 254.0 * cos_az * cos_alt;
    stencil3(dem, halo_px, out, |gx, gy| {
        let x = f64::from(gx) * fx;
        let y = f64::from(gy) * fy;
        let cang = (num0 + x * cx + y * cy) / (1.0 + x * x + y * y).sqrt();
        let shade = if cang <= 0.0 { 1.0 } else { 1.0 + cang };
        shade.min(255.0) as f32
    })
}

/// Slope of `dem` (with a halo of `halo_px ≥ 1`) into `out`, in degrees or percent.
pub fn slope(
    dem: Plane<'_>,
    halo_px: usize,
    p: &TerrainParams,
    units: SlopeUnits,
    out: &mut [f32],
) -> Result<(), KernelError> {
    p.validate()?;
    let (fx, fy) = p.gradient_factors();
    match units {
        SlopeUnits::Degrees => stencil3(dem, halo_px, out, |gx, gy| {
            let (x, y) = (f64::from(gx) * fx, f64::from(gy) * fy);
            (x * x + y * y).sqrt().atan().to_degrees() as f32
        }),
        SlopeUnits::Percent => stencil3(dem, halo_px, out, |gx, gy| {
            let (x, y) = (f64::from(gx) * fx, f64::from(gy) * fy);
            let pct = (100.0 * (x * x + y * y).sqrt()) as f32;
            if pct.is_finite() {
                pct
            } else {
                f32::NAN
            }
        }),
    }
}

/// Aspect of `dem` (with a halo of `halo_px ≥ 1`) into `out`: the direction the slope faces,
/// in degrees clockwise from north, `[0, 360)`; `NaN` where the window is exactly flat.
pub fn aspect(
    dem: Plane<'_>,
    halo_px: usize,
    p: &TerrainParams,
    out: &mut [f32],
) -> Result<(), KernelError> {
    p.validate()?;
    // The downhill direction (east, north) is (gx / pw, gy / ph), whose atan2 equals that of
    // (gx · ph/pw, gy); skipping the multiplication when ph/pw = 1 keeps square pixels
    // bit-identical to gdaldem, which ignores the pixel size.
    let ratio = p.pixel_height / p.pixel_width;
    let ratio_is_one = ratio == 1.0;
    stencil3(dem, halo_px, out, |gx, gy| {
        if gx == 0.0 && gy == 0.0 {
            return f32::NAN;
        }
        // gdaldem: dx = east - west = -gx, dy = south - north = gy, a = atan2(dy, -dx) in
        // degrees (the downhill direction, counter-clockwise from east), then the compass
        // bearing 90 - a, wrapped into [0, 360), all in gdaldem's f32 steps.
        let dy = f64::from(gy);
        let neg_dx = if ratio_is_one {
            f64::from(gx)
        } else {
            f64::from(gx) * ratio
        };
        let a = (dy.atan2(neg_dx) / (std::f64::consts::PI / 180.0)) as f32;
        let bearing = if a > 90.0 { 450.0 - a } else { 90.0 - a };
        if bearing == 360.0 {
            0.0
        } else {
            bearing
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5×4 plane `z = a·col + b·row` (rows run south), with a 1-px halo: 3×2 outputs.
    fn ramp(a: f32, b: f32) -> Vec<f32> {
        (0..20)
            .map(|i| a * (i % 5) as f32 + b * (i / 5) as f32)
            .collect()
    }

    type Kernel<'a> = dyn Fn(Plane<'_>, &mut [f32]) -> Result<(), KernelError> + 'a;

    fn run(
        kernel: impl Fn(Plane<'_>, &mut [f32]) -> Result<(), KernelError>,
        data: &[f32],
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; 6];
        kernel(Plane::new(5, 4, data).unwrap(), &mut out).unwrap();
        out
    }

    #[test]
    fn slope_of_a_ramp() {
        // Rises 3 m per 10 m pixel eastwards and 4 m per 10 m pixel southwards: gradient 0.5.
        let p = TerrainParams::new(10.0, 10.0);
        let deg = run(
            |d, o| slope(d, 1, &p, SlopeUnits::Degrees, o),
            &ramp(3.0, 4.0),
        );
        let want = 0.5f64.atan().to_degrees() as f32;
        assert!(deg.iter().all(|&v| (v - want).abs() < 1e-5), "{deg:?}");
        let pct = run(
            |d, o| slope(d, 1, &p, SlopeUnits::Percent, o),
            &ramp(3.0, 4.0),
        );
        assert!(pct.iter().all(|&v| (v - 50.0).abs() < 1e-4), "{pct:?}");
        // z factor 2 and scale 10 cancel out.
        let q = TerrainParams {
            z_factor: 2.0,
            scale: 2.0,
            ..p
        };
        let same = run(
            |d, o| slope(d, 1, &q, SlopeUnits::Degrees, o),
            &ramp(3.0, 4.0),
        );
        assert_eq!(same, deg);
    }

    #[test]
    fn aspect_faces_downhill() {
        let p = TerrainParams::new(30.0, 30.0);
        let cases = [
            ((1.0, 0.0), 270.0), // rises eastwards, faces west
            ((-1.0, 0.0), 90.0), // faces east
            ((0.0, 1.0), 0.0),   // rises southwards, faces north
            ((0.0, -1.0), 180.0),
            ((-1.0, -1.0), 135.0), // rises to the north-west, faces south-east
            ((1.0, 1.0), 315.0),
        ];
        for ((a, b), want) in cases {
            let got = run(|d, o| aspect(d, 1, &p, o), &ramp(a, b));
            assert!(got.iter().all(|&v| v == want), "{a},{b}: {got:?}");
        }
    }

    #[test]
    fn aspect_uses_the_pixel_shape() {
        // 1 m per pixel eastwards and southwards, but pixels 10 m wide and 30 m tall: the
        // gradient is (0.1, 1/30) per metre, facing west-north-west.
        let p = TerrainParams::new(10.0, 30.0);
        let got = run(|d, o| aspect(d, 1, &p, o), &ramp(1.0, 1.0));
        let want = (270.0 + (1.0f64 / 3.0).atan().to_degrees()) as f32;
        assert!(
            got.iter().all(|&v| (v - want).abs() < 1e-4),
            "{got:?} vs {want}"
        );
    }

    #[test]
    fn flat_ground() {
        let p = TerrainParams::new(30.0, 30.0);
        let flat = vec![42.0f32; 20];
        assert!(run(|d, o| aspect(d, 1, &p, o), &flat)
            .iter()
            .all(|v| v.is_nan()));
        assert!(run(|d, o| slope(d, 1, &p, SlopeUnits::Degrees, o), &flat)
            .iter()
            .all(|&v| v == 0.0));
        let hs = run(|d, o| hillshade(d, 1, &p, 315.0, 45.0, o), &flat);
        let want = (1.0 + 254.0 * 45f64.to_radians().sin()) as f32;
        assert!(hs.iter().all(|&v| v == want), "{hs:?}");
        let noon = run(|d, o| hillshade(d, 1, &p, 0.0, 90.0, o), &flat);
        assert!(noon.iter().all(|&v| v == 255.0), "{noon:?}");
    }

    #[test]
    fn hillshade_lights_slopes_facing_the_sun() {
        let p = TerrainParams::new(1.0, 1.0);
        // Rising to the south-east, so facing the default north-west sun: brighter than flat
        // ground; the opposite slope is in full shadow.
        let facing = run(|d, o| hillshade(d, 1, &p, 315.0, 45.0, o), &ramp(1.0, 1.0));
        let away = run(
            |d, o| hillshade(d, 1, &p, 315.0, 45.0, o),
            &ramp(-1.0, -1.0),
        );
        let flat = (1.0 + 254.0 * 45f64.to_radians().sin()) as f32;
        assert!(facing.iter().all(|&v| v > flat && v <= 255.0), "{facing:?}");
        assert!(away.iter().all(|&v| v == 1.0), "{away:?}");
        // A 45° slope facing due west under a western sun at 45°: normal incidence.
        let west = run(|d, o| hillshade(d, 1, &p, 270.0, 45.0, o), &ramp(1.0, 0.0));
        assert!(west.iter().all(|&v| (v - 255.0).abs() < 1e-4), "{west:?}");
    }

    #[test]
    fn nodata_in_the_window_propagates() {
        let p = TerrainParams::new(30.0, 30.0);
        for hole in 0..20 {
            let mut data = ramp(2.0, 1.0);
            data[hole] = f32::NAN;
            let (hx, hy) = (hole % 5, hole / 5);
            let kernels: [&Kernel<'_>; 3] = [
                &|d, o| hillshade(d, 1, &p, 315.0, 45.0, o),
                &|d, o| slope(d, 1, &p, SlopeUnits::Percent, o),
                &|d, o| aspect(d, 1, &p, o),
            ];
            for k in kernels {
                let out = run(k, &data);
                for (i, v) in out.iter().enumerate() {
                    let (x, y) = (i % 3 + 1, i / 3 + 1);
                    let near = x.abs_diff(hx) <= 1 && y.abs_diff(hy) <= 1;
                    assert_eq!(v.is_nan(), near, "hole {hole}, output {i}: {v}");
                }
            }
        }
    }

    #[test]
    fn overflow_is_nodata() {
        let p = TerrainParams::new(1.0, 1.0);
        let data: Vec<f32> = (0..20)
            .map(|i| if i % 5 < 2 { f32::MAX } else { -f32::MAX })
            .collect();
        let out = run(|d, o| slope(d, 1, &p, SlopeUnits::Degrees, o), &data);
        assert!(out.iter().all(|v| v.is_nan()), "{out:?}");
    }

    #[test]
    fn rejects_bad_input() {
        let data = ramp(1.0, 1.0);
        let dem = Plane::new(5, 4, &data).unwrap();
        let mut out = vec![0.0f32; 6];
        let ok = TerrainParams::new(1.0, 1.0);
        assert!(aspect(dem, 0, &ok, &mut out[..]).is_err());
        assert!(aspect(dem, 1, &ok, &mut out[..5]).is_err());
        assert!(aspect(dem, 3, &ok, &mut out[..0]).is_err());
        for bad in [
            TerrainParams::new(0.0, 1.0),
            TerrainParams::new(1.0, f64::NAN),
            TerrainParams {
                z_factor: -1.0,
                ..ok
            },
            TerrainParams { scale: 0.0, ..ok },
        ] {
            assert!(slope(dem, 1, &bad, SlopeUnits::Degrees, &mut out).is_err());
        }
        assert!(hillshade(dem, 1, &ok, f64::INFINITY, 45.0, &mut out).is_err());
        // A 2-px halo on a 5×4 input leaves a 1×0 window.
        assert!(slope(dem, 2, &ok, SlopeUnits::Degrees, &mut []).is_ok());
    }
}
