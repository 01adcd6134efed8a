//! Areas of interest: a polygon ring in EPSG:4326 `(lon, lat)` degrees, checked once, and
//! whether a tile's footprint ring meets it (shared edges and touching corners count).

use crate::error::{EngineError, Result};

/// Most vertices an area of interest may have.
pub const MAX_AOI_VERTICES: usize = 10_000;

/// A checked, closed ring with its bounding box.
#[derive(Debug, Clone, PartialEq)]
pub struct Aoi {
    ring_deg: Vec<(f64, f64)>,
    bbox_deg: [f64; 4],
}

fn bbox(ring: &[(f64, f64)]) -> [f64; 4] {
    ring.iter().fold(
        [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ],
        |b, &(x, y)| [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)],
    )
}

impl Aoi {
    /// Checks a ring (closed here when open): at least three distinct vertices, finite,
    /// longitudes within ±180 and latitudes within ±90, a non-zero area.
    pub fn new(ring_deg: &[(f64, f64)]) -> Result<Self> {
        let bad = |m: &str| EngineError::InvalidInput(format!("area of interest: {m}"));
        let mut ring = ring_deg.to_vec();
        if ring.first() != ring.last() {
            if let Some(&first) = ring.first() {
                ring.push(first);
            }
        }
        if ring.len() < 4 {
            return Err(bad("a ring needs at least 3 distinct vertices"));
        }
        if ring.len() > MAX_AOI_VERTICES {
            return Err(bad(&format!("at most {MAX_AOI_VERTICES} vertices")));
        }
        if ring
            .iter()
            .any(|&(x, y)| !x.is_finite() || !y.is_finite() || x.abs() > 180.0 || y.abs() > 90.0)
        {
            return Err(bad("coordinates must be longitude, latitude in degrees"));
        }
        let twice_area: f64 = ring
            .windows(2)
            .map(|p| p[0].0 * p[1].1 - p[1].0 * p[0].1)
            .sum();
        if twice_area.abs() < 1e-18 {
            return Err(bad("the ring encloses no area"));
        }
        Ok(Self {
            bbox_deg: bbox(&ring),
            ring_deg: ring,
        })
    }

    /// The closed ring.
    pub fn ring_deg(&self) -> &[(f64, f64)] {
        &self.ring_deg
    }

    /// Whether a closed polygon ring (a tile footprint) meets this area.
    pub fn meets(&self, ring_deg: &[(f64, f64)]) -> bool {
        if ring_deg.len() < 2 {
            return false;
        }
        let b = bbox(ring_deg);
        let a = self.bbox_deg;
        if b[0] > a[2] || b[2] < a[0] || b[1] > a[3] || b[3] < a[1] {
            return false;
        }
        inside(ring_deg[0], &self.ring_deg)
            || inside(self.ring_deg[0], ring_deg)
            || edges_cross(ring_deg, &self.ring_deg)
    }
}

/// Point in polygon (even-odd rule).
fn inside(p: (f64, f64), ring: &[(f64, f64)]) -> bool {
    let mut c = false;
    for w in ring.windows(2) {
        let ((x1, y1), (x2, y2)) = (w[0], w[1]);
        if (y1 > p.1) != (y2 > p.1) && p.0 < (x2 - x1) * (p.1 - y1) / (y2 - y1) + x1 {
            c = !c;
        }
    }
    c
}

fn orient(a: (f64, f64), b: (f64, f64), c: (f64, f64)) -> f64 {
    (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0)
}

fn on_segment(a: (f64, f64), b: (f64, f64), p: (f64, f64)) -> bool {
    p.0 >= a.0.min(b.0) && p.0 <= a.0.max(b.0) && p.1 >= a.1.min(b.1) && p.1 <= a.1.max(b.1)
}

fn segments_meet(a: (f64, f64), b: (f64, f64), c: (f64, f64), d: (f64, f64)) -> bool {
    let (o1, o2, o3, o4) = (
        orient(a, b, c),
        orient(a, b, d),
        orient(c, d, a),
        orient(c, d, b),
    );
    if ((o1 > 0.0 && o2 < 0.0) || (o1 < 0.0 && o2 > 0.0))
        && ((o3 > 0.0 && o4 < 0.0) || (o3 < 0.0 && o4 > 0.0))
    {
        return true;
    }
    (o1 == 0.0 && on_segment(a, b, c))
        || (o2 == 0.0 && on_segment(a, b, d))
        || (o3 == 0.0 && on_segment(c, d, a))
        || (o4 == 0.0 && on_segment(c, d, b))
}

fn edges_cross(r: &[(f64, f64)], s: &[(f64, f64)]) -> bool {
    r.windows(2)
        .any(|e| s.windows(2).any(|f| segments_meet(e[0], e[1], f[0], f[1])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: f64, y: f64, size: f64) -> Vec<(f64, f64)> {
        vec![
            (x, y),
            (x + size, y),
            (x + size, y + size),
            (x, y + size),
            (x, y),
        ]
    }

    #[test]
    fn overlap_containment_touching_and_disjoint() {
        let aoi = Aoi::new(&square(0.0, 0.0, 1.0)[..4]).unwrap();
        assert!(aoi.meets(&square(0.5, 0.5, 1.0)), "overlapping corners");
        assert!(aoi.meets(&square(0.25, 0.25, 0.5)), "tile inside the area");
        assert!(aoi.meets(&square(-1.0, -1.0, 3.0)), "area inside the tile");
        assert!(aoi.meets(&square(1.0, 0.0, 1.0)), "shared edge");
        assert!(!aoi.meets(&square(1.5, 0.0, 1.0)), "disjoint");
        // A cross: edges cross but no vertex of either lies inside the other.
        let wide = vec![
            (-1.0, 0.4),
            (2.0, 0.4),
            (2.0, 0.6),
            (-1.0, 0.6),
            (-1.0, 0.4),
        ];
        assert!(aoi.meets(&wide));
        // An L-shaped area: its bounding box covers the tile, the area does not.
        let l = Aoi::new(&[
            (0.0, 0.0),
            (2.0, 0.0),
            (2.0, 1.0),
            (1.0, 1.0),
            (1.0, 2.0),
            (0.0, 2.0),
        ])
        .unwrap();
        assert!(!l.meets(&square(1.2, 1.2, 0.5)));
        assert!(l.meets(&square(0.2, 1.2, 0.5)));
    }

    #[test]
    fn bad_rings_are_refused_with_the_reason() {
        for (ring, why) in [
            (vec![(0.0, 0.0), (1.0, 1.0)], "3 distinct"),
            (vec![(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)], "no area"),
            (vec![(0.0, 0.0), (200.0, 0.0), (0.0, 1.0)], "longitude"),
            (vec![(0.0, 0.0), (f64::NAN, 0.0), (0.0, 1.0)], "longitude"),
        ] {
            let e = Aoi::new(&ring).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
