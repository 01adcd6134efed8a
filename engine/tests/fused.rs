//! The fused element-wise chain against the step-by-step pipeline, on the CPU: every recipe's
//! tiles, packed into one chain call, must come out bit for bit as each tile run step by step.

use std::sync::Arc;

use engine::backend::{Backend, Chain, ChainOp, ExprKernel};
use engine::conformance::{random_planes, Rng};
use engine::pipeline::{GridFacts, Prepared, TileInput, TilePlane};
use engine::recipe::{self, BandRole, OutputBand, Recipe, Resample, Step};
use kernels::scale::Scaling;

const GRID: GridFacts = GridFacts {
    pixel_width: 30.0,
    pixel_height: 30.0,
    scale: 1.0,
};

/// Tiles of mixed sizes, including one pixel wide and one tall.
const TILES: [(usize, usize); 4] = [(33, 17), (1, 1), (64, 48), (5, 70)];

fn tiles_for(prepared: &Prepared, seed: u64) -> Vec<TileInput> {
    let halo = prepared.recipe.halo_px();
    TILES
        .iter()
        .enumerate()
        .map(|(t, &(w, h))| {
            let len = (w + 2 * halo) * (h + 2 * halo);
            let planes = prepared
                .recipe
                .roles()
                .enumerate()
                .map(|(r, role)| {
                    let draw = if matches!(role, "qa" | "scl") {
                        Rng::qa
                    } else {
                        Rng::value
                    };
                    let data = random_planes(seed, (10 * t + r) as u64, 1, len, draw).remove(0);
                    (
                        role.to_string(),
                        TilePlane {
                            halo_px: halo,
                            data,
                        },
                    )
                })
                .collect();
            TileInput {
                width_px: w,
                height_px: h,
                planes,
            }
        })
        .collect()
}

fn same_bits(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        })
}

/// Runs `prepared` both ways and asserts identical bits; returns how many steps were fused.
fn check(prepared: &Prepared, seed: u64) -> usize {
    let tiles = tiles_for(prepared, seed);
    let want: Vec<Vec<Vec<f32>>> = tiles
        .iter()
        .map(|t| {
            prepared
                .run_tile(t.width_px, t.height_px, t.planes.clone(), &GRID)
                .expect("step by step")
        })
        .collect();
    let got = prepared.run_tiles_fused(&Backend::Cpu, tiles, &GRID);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.into_iter().zip(&want).enumerate() {
        let g = g.unwrap_or_else(|e| panic!("{}: tile {i}: {e}", prepared.recipe.name));
        assert!(
            same_bits(&g, w),
            "{}: tile {i} differs from the step-by-step run",
            prepared.recipe.name
        );
    }
    prepared.fused_steps()
}

#[test]
fn every_catalog_recipe_fused_equals_step_by_step() {
    let mut fused_any = 0;
    for recipe in recipe::catalog(&recipe::Params::new()).expect("catalog") {
        let prepared = Prepared::new(recipe).expect("prepare");
        fused_any += usize::from(check(&prepared, 11) > 0);
    }
    // Every index recipe (two sensors) and the Level-1 NDVI start with element-wise steps.
    assert!(fused_any >= 5, "only {fused_any} recipes fused");
}

fn band(role: &str) -> BandRole {
    BandRole {
        role: role.into(),
        resample: Resample::Nearest,
    }
}

/// Element-wise steps, then a stencil, then an expression over every plane: the chain hands
/// back exactly what the later steps read, at the tiles' halo.
#[test]
fn a_fused_prefix_feeds_stencils_and_later_expressions() {
    let recipe = Recipe {
        name: "mixed".into(),
        description: "scale, expression, slope, expression".into(),
        bands: vec![band("dem"), band("red"), band("nir")],
        steps: vec![
            Step::Scale {
                planes: vec!["dem".into(), "red".into()],
                scaling: Scaling {
                    scale: 0.5,
                    offset: 3.0,
                },
            },
            Step::Expr {
                text: "dem * 2 + nir".into(),
                out: "z".into(),
            },
            Step::Slope {
                dem: "z".into(),
                z_factor: 1.0,
                out: "s".into(),
            },
            Step::Expr {
                text: "s + red - z".into(),
                out: "o".into(),
            },
        ],
        outputs: vec![
            OutputBand {
                plane: "o".into(),
                description: "o".into(),
                histogram_range: None,
            },
            OutputBand {
                plane: "red".into(),
                description: "scaled red".into(),
                histogram_range: None,
            },
        ],
    };
    let prepared = Prepared::new(recipe).expect("prepare");
    assert_eq!(check(&prepared, 5), 2);
}

/// A tile whose planes carry different halos cannot be packed; it runs step by step and
/// matches, beside packed tiles.
#[test]
fn a_tile_with_mismatched_halos_runs_step_by_step() {
    let prepared =
        Prepared::new(recipe::by_name("ndvi-landsat-c2l2", &recipe::Params::new()).expect("r"))
            .expect("prepare");
    let mut tiles = tiles_for(&prepared, 3);
    // Give the first tile's quality plane one pixel of halo more than the others.
    let (w, h) = (tiles[0].width_px, tiles[0].height_px);
    tiles[0].planes.insert(
        "qa".into(),
        TilePlane {
            halo_px: 1,
            data: random_planes(3, 99, 1, (w + 2) * (h + 2), Rng::qa).remove(0),
        },
    );
    let want: Vec<_> = tiles
        .iter()
        .map(|t| prepared.run_tile(t.width_px, t.height_px, t.planes.clone(), &GRID))
        .collect();
    let got = prepared.run_tiles_fused(&Backend::Cpu, tiles, &GRID);
    for (g, w) in got.into_iter().zip(want) {
        assert!(same_bits(&g.expect("fused"), &w.expect("step by step")));
    }
}

#[test]
fn a_tile_missing_a_band_fails_alone() {
    let prepared =
        Prepared::new(recipe::by_name("ndvi-landsat-c2l2", &recipe::Params::new()).expect("r"))
            .expect("prepare");
    let mut tiles = tiles_for(&prepared, 4);
    tiles[1].planes.remove("nir");
    let got = prepared.run_tiles_fused(&Backend::Cpu, tiles, &GRID);
    assert!(got[0].is_ok() && got[2].is_ok() && got[3].is_ok());
    let err = got[1].as_ref().expect_err("a missing band fails its tile");
    assert!(err.to_string().contains("nir"), "{err}");
}

#[test]
fn chains_are_checked_when_built_and_called() {
    let scale = |src| ChainOp::Scale {
        src,
        scaling: Scaling::IDENTITY,
    };
    let err = Chain::new(1, vec![scale(1)], vec![1]).expect_err("reads its own output");
    assert!(
        err.to_string().contains("does not exist before it"),
        "{err}"
    );
    let err = Chain::new(1, vec![scale(0)], vec![2]).expect_err("no plane 2");
    assert!(err.to_string().contains("output plane 2"), "{err}");
    let bad = ChainOp::Scale {
        src: 0,
        scaling: Scaling {
            scale: f32::NAN,
            offset: 0.0,
        },
    };
    assert!(Chain::new(1, vec![bad], vec![1]).is_err());
    let savi = ChainOp::Savi {
        nir: 0,
        red: 0,
        l: -1.0,
    };
    assert!(Chain::new(1, vec![savi], vec![1]).is_err());
    let expr = Arc::new(ExprKernel::parse("a + b", &["a", "b"]).expect("expr"));
    let wrong = ChainOp::Expr {
        kernel: expr,
        bands: vec![0],
    };
    assert!(Chain::new(1, vec![wrong], vec![1]).is_err());

    let chain = Chain::new(2, vec![scale(0)], vec![2, 1, 2]).expect("chain");
    let err = Backend::Cpu
        .run_chain(&chain, &[&[1.0; 4]])
        .expect_err("one input for two");
    assert!(err.to_string().contains("2 expected"), "{err}");
    let err = Backend::Cpu
        .run_chain(&chain, &[&[1.0; 4], &[1.0; 3]])
        .expect_err("lengths differ");
    assert!(
        err.to_string().contains("length") || err.to_string().contains("3"),
        "{err}"
    );
    // An input handed back, and one plane twice.
    let out = Backend::Cpu
        .run_chain(&chain, &[&[2.0; 4], &[7.0; 4]])
        .expect("runs");
    assert_eq!(out, vec![vec![2.0; 4], vec![7.0; 4], vec![2.0; 4]]);
    let empty = Backend::Cpu
        .run_chain(&chain, &[&[], &[]])
        .expect("empty planes");
    assert_eq!(empty, vec![Vec::<f32>::new(); 3]);
}

/// wgpu's resident chains (Mesa's lavapipe in CI) on what the conformance suite does not
/// draw: an input handed back, one plane returned twice, a constant expression (no device
/// kernel: the chain runs on the CPU), a chain of no ops, and empty planes; over several small
/// chunks, each bit for bit as the CPU.
#[cfg(feature = "wgpu")]
#[test]
fn resident_wgpu_chains_match_the_cpu_at_the_edges() {
    use engine::backend::{WgpuBackend, WgpuOptions};
    let wgpu = match WgpuBackend::new(&WgpuOptions {
        allow_software: true,
        max_chunk_px: Some(1_000),
        ..WgpuOptions::default()
    }) {
        Ok(w) => Backend::from(w),
        Err(e) => {
            eprintln!("NOT RUN: wgpu did not start: {e}");
            return;
        }
    };
    let len = 2_345;
    let planes = random_planes(5, 1, 2, len, Rng::value);
    let (a, b) = (planes[0].as_slice(), planes[1].as_slice());
    let scaled = ChainOp::Scale {
        src: 0,
        scaling: Scaling::SENTINEL2_L2A,
    };
    let constant = Arc::new(ExprKernel::parse("2 + 3", &["a"]).expect("expr"));
    let cases = [
        (
            "input back, a plane twice",
            Chain::new(2, vec![scaled.clone()], vec![2, 1, 2]),
        ),
        (
            "constant expression",
            Chain::new(
                1,
                vec![ChainOp::Expr {
                    kernel: constant,
                    bands: vec![0],
                }],
                vec![1, 0],
            ),
        ),
        ("no ops", Chain::new(2, vec![], vec![1, 0])),
        (
            "a later op reads an earlier output",
            Chain::new(
                2,
                vec![scaled, ChainOp::NormalizedDifference { a: 2, b: 1 }],
                vec![3],
            ),
        ),
    ];
    for (name, chain) in cases {
        let chain = chain.expect(name);
        let inputs: Vec<&[f32]> = [a, b][..chain.inputs()].to_vec();
        let want = Backend::Cpu.run_chain(&chain, &inputs).expect(name);
        let got = wgpu.run_chain(&chain, &inputs).expect(name);
        assert!(same_bits(&got, &want), "{name}: wgpu differs from the cpu");
        let empty: Vec<&[f32]> = vec![&[]; chain.inputs()];
        let got = wgpu.run_chain(&chain, &empty).expect(name);
        assert_eq!(
            got,
            vec![Vec::<f32>::new(); chain.outputs().len()],
            "{name}"
        );
    }
}
