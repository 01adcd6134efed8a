//! Cutting a scene grid into tiles with halos for stencil kernels.

use crate::grid::Window;

/// One tile of a scene: its index, its place in the tile grid and its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub index: usize,
    pub col: usize,
    pub row: usize,
    pub window: Window,
}

/// A scene cut into tiles of at most `tile_px` × `tile_px`, in row-major order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TilePlan {
    pub width_px: usize,
    pub height_px: usize,
    pub tile_px: usize,
    pub cols: usize,
    pub rows: usize,
}

impl TilePlan {
    /// Plans tiles over a `width_px` × `height_px` grid; `tile_px` must be positive.
    pub fn new(width_px: usize, height_px: usize, tile_px: usize) -> Self {
        let tile_px = tile_px.max(1);
        Self {
            width_px,
            height_px,
            tile_px,
            cols: width_px.div_ceil(tile_px),
            rows: height_px.div_ceil(tile_px),
        }
    }

    /// Number of tiles.
    pub fn len(&self) -> usize {
        self.cols * self.rows
    }

    /// Whether the plan has no tiles (an empty grid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tile `index` (row-major).
    pub fn tile(&self, index: usize) -> Tile {
        let (row, col) = (index / self.cols, index % self.cols);
        let x = col * self.tile_px;
        let y = row * self.tile_px;
        Tile {
            index,
            col,
            row,
            window: Window::new(
                x as i64,
                y as i64,
                self.tile_px.min(self.width_px - x),
                self.tile_px.min(self.height_px - y),
            ),
        }
    }

    /// Every tile.
    pub fn tiles(&self) -> impl Iterator<Item = Tile> + '_ {
        (0..self.len()).map(|i| self.tile(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_grid_exactly_once() {
        let plan = TilePlan::new(1098, 700, 512);
        assert_eq!((plan.cols, plan.rows), (3, 2));
        let mut seen = vec![0u8; 1098 * 700];
        for t in plan.tiles() {
            let w = t.window;
            for y in 0..w.height_px {
                for x in 0..w.width_px {
                    seen[(w.y_px as usize + y) * 1098 + w.x_px as usize + x] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        assert_eq!(plan.tile(5).window, Window::new(1024, 512, 74, 188));
    }
}
