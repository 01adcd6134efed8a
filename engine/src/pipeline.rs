//! Executes a prepared recipe on one tile: named `f32` planes in, output planes out.
//!
//! Every plane of a tile carries its own halo. Element-wise steps run over the whole plane
//! (halo included) and keep the smallest halo of their inputs; stencil steps consume halo.
//! Outputs are cropped to the tile's window, so a tiled run equals a whole-scene run.
//!
//! The element-wise steps (scale, mask, the indices and expressions) run on the [`Backend`]
//! given to [`Prepared::run_tile_on`]; stencils (convolve, terrain) and pansharpening always run
//! on the CPU kernels for now. On a device backend the recipe's leading element-wise steps run
//! as one fused [`Chain`] (inputs uploaded once, intermediates kept on the device), and
//! [`Prepared::run_tiles_on`] packs many tiles into that one call; on the CPU every step runs in
//! place, one tile at a time, as the reference.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use kernels::convolve::convolve;
use kernels::plane::Plane;
use kernels::terrain::{aspect, hillshade, slope, SlopeUnits, TerrainParams};

use crate::backend::{Backend, Chain, ChainOp, ExprKernel};
use crate::error::{EngineError, Result};
use crate::recipe::{Recipe, Step};

/// One plane of a tile: `(width_px + 2·halo_px) × (height_px + 2·halo_px)` values.
#[derive(Debug, Clone, PartialEq)]
pub struct TilePlane {
    pub halo_px: usize,
    pub data: Vec<f32>,
}

/// Facts about the grid that stencil kernels need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridFacts {
    /// Pixel width and height in CRS units.
    pub pixel_width: f64,
    pub pixel_height: f64,
    /// Horizontal units per vertical unit (gdaldem's `-s`): 1 for projected grids in metres,
    /// 111 120 for geographic grids in degrees.
    pub scale: f64,
}

/// One tile's input to [`Prepared::run_tiles_on`]: its inner window's size and its bands by role.
#[derive(Debug, Clone, PartialEq)]
pub struct TileInput {
    pub width_px: usize,
    pub height_px: usize,
    pub planes: HashMap<String, TilePlane>,
}

/// A recipe made ready to run: expressions parsed, typed and compiled once.
#[derive(Debug)]
pub struct Prepared {
    pub recipe: Recipe,
    compiled: Vec<Option<(Arc<ExprKernel>, Vec<String>)>>,
    fused: Option<Fused>,
}

/// The recipe's leading element-wise steps as one [`Chain`], with the plane names it takes and
/// gives back.
#[derive(Debug)]
struct Fused {
    /// How many leading steps the chain replaces.
    steps: usize,
    /// The planes passed in, in the chain's input order.
    inputs: Vec<String>,
    /// The planes given back (those a later step or an output needs), in output order.
    outputs: Vec<String>,
    chain: Chain,
}

impl Prepared {
    /// Prepares `recipe`; an invalid expression fails here, before any I/O.
    pub fn new(recipe: Recipe) -> Result<Self> {
        let mut names: Vec<String> = recipe.roles().map(str::to_string).collect();
        let mut compiled = Vec::with_capacity(recipe.steps.len());
        for step in &recipe.steps {
            compiled.push(match step {
                Step::Expr { text, .. } => {
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    Some((Arc::new(ExprKernel::parse(text, &refs)?), names.clone()))
                }
                _ => None,
            });
            names.extend(step_outputs(step).into_iter().map(str::to_string));
        }
        for out in &recipe.outputs {
            if !names.contains(&out.plane) {
                return Err(EngineError::InvalidInput(format!(
                    "recipe {} writes {:?}, which no step produces",
                    recipe.name, out.plane
                )));
            }
        }
        let fused = fuse(&recipe, &compiled)?;
        Ok(Self {
            recipe,
            compiled,
            fused,
        })
    }

    /// How many leading steps run as one fused chain on a device backend (0 when none do).
    pub fn fused_steps(&self) -> usize {
        self.fused.as_ref().map_or(0, |f| f.steps)
    }

    /// Runs the recipe on one tile whose inner window is `width_px` × `height_px`. `planes`
    /// holds the recipe's bands by role; returns the output planes, cropped to the window.
    /// Runs on the CPU reference; see [`run_tile_on`](Self::run_tile_on).
    pub fn run_tile(
        &self,
        width_px: usize,
        height_px: usize,
        planes: HashMap<String, TilePlane>,
        grid: &GridFacts,
    ) -> Result<Vec<Vec<f32>>> {
        self.run_tile_on(&Backend::Cpu, width_px, height_px, planes, grid)
    }

    /// [`run_tile`](Self::run_tile) with the element-wise steps on `backend`.
    pub fn run_tile_on(
        &self,
        backend: &Backend,
        width_px: usize,
        height_px: usize,
        planes: HashMap<String, TilePlane>,
        grid: &GridFacts,
    ) -> Result<Vec<Vec<f32>>> {
        let tile = TileInput {
            width_px,
            height_px,
            planes,
        };
        match self.run_tiles_on(backend, vec![tile], grid).pop() {
            Some(result) => result,
            None => Err(EngineError::Backend("a tile went missing".into())),
        }
    }

    /// Runs the recipe on many tiles, returning each tile's outputs (or its error) in order.
    /// On a device backend, tiles whose fused inputs share one halo go through the fused chain
    /// together, packed end to end into one call; on the CPU each tile runs step by step.
    pub fn run_tiles_on(
        &self,
        backend: &Backend,
        tiles: Vec<TileInput>,
        grid: &GridFacts,
    ) -> Vec<Result<Vec<Vec<f32>>>> {
        if matches!(backend, Backend::Cpu) {
            return tiles
                .into_iter()
                .map(|t| self.run_steps(backend, 0, t.width_px, t.height_px, t.planes, grid))
                .collect();
        }
        self.run_tiles_fused(backend, tiles, grid)
    }

    /// [`run_tiles_on`](Self::run_tiles_on) through the fused chain on any backend, the CPU
    /// included (which checks the chain against the step-by-step reference).
    pub fn run_tiles_fused(
        &self,
        backend: &Backend,
        tiles: Vec<TileInput>,
        grid: &GridFacts,
    ) -> Vec<Result<Vec<Vec<f32>>>> {
        let Some(fused) = self.fused.as_ref() else {
            return tiles
                .into_iter()
                .map(|t| self.run_steps(backend, 0, t.width_px, t.height_px, t.planes, grid))
                .collect();
        };
        let halo_of = |t: &TileInput| -> Option<usize> {
            let mut halos = fused
                .inputs
                .iter()
                .map(|n| t.planes.get(n).map(|p| p.halo_px));
            let first = halos.next()??;
            halos.all(|h| h == Some(first)).then_some(first)
        };
        // Tiles the chain cannot take (mismatched halos or a missing plane) run step by step,
        // and report their own errors.
        let mut results: Vec<Option<Result<Vec<Vec<f32>>>>> = Vec::with_capacity(tiles.len());
        let mut packed: Vec<(usize, TileInput, usize)> = Vec::new();
        for (i, tile) in tiles.into_iter().enumerate() {
            match halo_of(&tile) {
                Some(halo) => {
                    results.push(None);
                    packed.push((i, tile, halo));
                }
                None => results.push(Some(self.run_steps(
                    backend,
                    0,
                    tile.width_px,
                    tile.height_px,
                    tile.planes,
                    grid,
                ))),
            }
        }
        if packed.is_empty() {
            return results.into_iter().flatten().collect();
        }
        // Each input plane of every packed tile, end to end.
        let lens: Vec<usize> = packed
            .iter()
            .map(|(_, t, h)| (t.width_px + 2 * h) * (t.height_px + 2 * h))
            .collect();
        let total: usize = lens.iter().sum();
        let mut inputs = Vec::with_capacity(fused.inputs.len());
        for name in &fused.inputs {
            let mut plane = Vec::with_capacity(total);
            for (_, tile, _) in &mut packed {
                // Present: `halo_of` checked every input.
                if let Some(p) = tile.planes.remove(name) {
                    plane.extend_from_slice(&p.data);
                }
            }
            inputs.push(plane);
        }
        let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let ran = inputs
            .iter()
            .all(|p| p.len() == total)
            .then(|| backend.run_chain(&fused.chain, &refs));
        match ran {
            Some(Ok(outputs)) => {
                let mut offset = 0;
                for ((i, mut tile, halo), len) in packed.into_iter().zip(lens) {
                    for (name, plane) in fused.outputs.iter().zip(&outputs) {
                        tile.planes.insert(
                            name.clone(),
                            TilePlane {
                                halo_px: halo,
                                data: plane[offset..offset + len].to_vec(),
                            },
                        );
                    }
                    offset += len;
                    results[i] = Some(self.run_steps(
                        backend,
                        fused.steps,
                        tile.width_px,
                        tile.height_px,
                        tile.planes,
                        grid,
                    ));
                }
            }
            other => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "a tile's planes do not match its window".to_string(),
                };
                for (i, _, _) in packed {
                    results[i] = Some(Err(EngineError::Backend(why.clone())));
                }
            }
        }
        results.into_iter().flatten().collect()
    }

    /// Runs the steps from `first_step` on, each on `backend` where it is element-wise.
    fn run_steps(
        &self,
        backend: &Backend,
        first_step: usize,
        width_px: usize,
        height_px: usize,
        mut planes: HashMap<String, TilePlane>,
        grid: &GridFacts,
    ) -> Result<Vec<Vec<f32>>> {
        let dims = |halo: usize| (width_px + 2 * halo, height_px + 2 * halo);
        for (step, compiled) in self
            .recipe
            .steps
            .iter()
            .zip(&self.compiled)
            .skip(first_step)
        {
            match step {
                Step::Scale {
                    planes: names,
                    scaling,
                } => {
                    for name in names {
                        let p = get_mut(&mut planes, name)?;
                        backend.scale_in_place(&mut p.data, *scaling)?;
                    }
                }
                Step::Mask {
                    planes: names,
                    qa,
                    rule,
                } => {
                    for name in names {
                        // Take the target out so the QA plane can be borrowed beside it.
                        let mut p = planes.remove(name.as_str()).ok_or_else(|| missing(name))?;
                        let qa_data = crop(get(&planes, qa)?, p.halo_px, width_px, height_px)?;
                        backend.apply_mask(&mut p.data, &qa_data, rule)?;
                        planes.insert(name.clone(), p);
                    }
                }
                Step::NormalizedDifference { a, b, out } => {
                    let [a, b] = aligned(&planes, [a, b], width_px, height_px)?;
                    let mut o = vec![0.0; a.1.len()];
                    backend.normalized_difference(&a.1, &b.1, &mut o)?;
                    planes.insert(
                        out.clone(),
                        TilePlane {
                            halo_px: a.0,
                            data: o,
                        },
                    );
                }
                Step::Evi {
                    nir,
                    red,
                    blue,
                    out,
                } => {
                    let [n, r, b] = aligned(&planes, [nir, red, blue], width_px, height_px)?;
                    let mut o = vec![0.0; n.1.len()];
                    backend.evi(&n.1, &r.1, &b.1, &mut o)?;
                    planes.insert(
                        out.clone(),
                        TilePlane {
                            halo_px: n.0,
                            data: o,
                        },
                    );
                }
                Step::Savi { nir, red, l, out } => {
                    let [n, r] = aligned(&planes, [nir, red], width_px, height_px)?;
                    let mut o = vec![0.0; n.1.len()];
                    backend.savi(&n.1, &r.1, *l, &mut o)?;
                    planes.insert(
                        out.clone(),
                        TilePlane {
                            halo_px: n.0,
                            data: o,
                        },
                    );
                }
                Step::Expr { out, .. } => {
                    let Some((program, names)) = compiled else {
                        return Err(EngineError::InvalidInput("expression not compiled".into()));
                    };
                    let halo = names
                        .iter()
                        .filter_map(|n| planes.get(n).map(|p| p.halo_px))
                        .min()
                        .unwrap_or(0);
                    let inputs = names
                        .iter()
                        .map(|n| crop(get(&planes, n)?, halo, width_px, height_px))
                        .collect::<Result<Vec<_>>>()?;
                    let refs: Vec<&[f32]> = inputs.iter().map(|c| &**c).collect();
                    let (w, h) = dims(halo);
                    let mut o = vec![0.0; w * h];
                    backend.expr(program, &refs, &mut o)?;
                    planes.insert(
                        out.clone(),
                        TilePlane {
                            halo_px: halo,
                            data: o,
                        },
                    );
                }
                Step::Convolve { input, kind, out } => {
                    let p = get(&planes, input)?;
                    let k = kind.halo_px();
                    let plane = stencil(p, k, width_px, height_px, |plane, o| {
                        convolve(*kind, plane, k, o)
                    })?;
                    planes.insert(out.clone(), plane);
                }
                Step::Hillshade {
                    dem,
                    azimuth_deg,
                    altitude_deg,
                    z_factor,
                    out,
                } => {
                    let params = terrain_params(grid, *z_factor);
                    let p = get(&planes, dem)?;
                    let plane = stencil(p, 1, width_px, height_px, |plane, o| {
                        hillshade(plane, 1, &params, *azimuth_deg, *altitude_deg, o)
                    })?;
                    planes.insert(out.clone(), plane);
                }
                Step::Slope { dem, z_factor, out } => {
                    let params = terrain_params(grid, *z_factor);
                    let p = get(&planes, dem)?;
                    let plane = stencil(p, 1, width_px, height_px, |plane, o| {
                        slope(plane, 1, &params, SlopeUnits::Degrees, o)
                    })?;
                    planes.insert(out.clone(), plane);
                }
                Step::Aspect { dem, z_factor, out } => {
                    let params = terrain_params(grid, *z_factor);
                    let p = get(&planes, dem)?;
                    let plane = stencil(p, 1, width_px, height_px, |plane, o| {
                        aspect(plane, 1, &params, o)
                    })?;
                    planes.insert(out.clone(), plane);
                }
                Step::Pansharpen {
                    pan,
                    ms,
                    weights,
                    outs,
                } => {
                    let pan_plane = get(&planes, pan)?;
                    let halo = pan_plane.halo_px;
                    let (w, h) = dims(halo);
                    let ms_data = ms
                        .iter()
                        .map(|n| crop(get(&planes, n)?, halo, width_px, height_px))
                        .collect::<Result<Vec<_>>>()?;
                    let ms_planes = ms_data
                        .iter()
                        .map(|d| Plane::new(w, h, d))
                        .collect::<Result<Vec<_>, _>>()?;
                    let mut out_data = vec![vec![0.0f32; w * h]; outs.len()];
                    {
                        let mut out_refs: Vec<&mut [f32]> =
                            out_data.iter_mut().map(Vec::as_mut_slice).collect();
                        kernels::pansharpen::weighted_brovey(
                            Plane::new(w, h, &pan_plane.data)?,
                            &ms_planes,
                            weights,
                            &mut out_refs,
                        )?;
                    }
                    for (name, data) in outs.iter().zip(out_data) {
                        planes.insert(
                            name.clone(),
                            TilePlane {
                                halo_px: halo,
                                data,
                            },
                        );
                    }
                }
            }
        }
        self.recipe
            .outputs
            .iter()
            .map(|o| Ok(crop(get(&planes, &o.plane)?, 0, width_px, height_px)?.into_owned()))
            .collect()
    }
}

fn terrain_params(grid: &GridFacts, z_factor: f64) -> TerrainParams {
    TerrainParams {
        pixel_width: grid.pixel_width,
        pixel_height: grid.pixel_height,
        z_factor,
        scale: grid.scale,
    }
}

/// Whether a step is element-wise and runs on the backend (so it can join a fused chain).
fn is_element_wise(step: &Step) -> bool {
    matches!(
        step,
        Step::Scale { .. }
            | Step::Mask { .. }
            | Step::NormalizedDifference { .. }
            | Step::Evi { .. }
            | Step::Savi { .. }
            | Step::Expr { .. }
    )
}

/// The names a step reads: for an expression, the bands it uses, or with `bound` every name
/// it was bound against (the step-by-step path crops each of them).
fn step_reads<'a>(
    step: &'a Step,
    compiled: Option<&'a (Arc<ExprKernel>, Vec<String>)>,
    bound: bool,
) -> Vec<&'a str> {
    match step {
        Step::Scale { planes, .. } => planes.iter().map(String::as_str).collect(),
        Step::Mask { planes, qa, .. } => planes
            .iter()
            .map(String::as_str)
            .chain([qa.as_str()])
            .collect(),
        Step::NormalizedDifference { a, b, .. } => vec![a, b],
        Step::Evi { nir, red, blue, .. } => vec![nir, red, blue],
        Step::Savi { nir, red, .. } => vec![nir, red],
        Step::Expr { .. } if bound => compiled.map_or_else(Vec::new, |(_, names)| {
            names.iter().map(String::as_str).collect()
        }),
        Step::Expr { .. } => compiled.map_or_else(Vec::new, |(kernel, names)| {
            kernel
                .typed()
                .bands_used()
                .into_iter()
                .filter_map(|b| names.get(b).map(String::as_str))
                .collect()
        }),
        Step::Convolve { input, .. } => vec![input],
        Step::Hillshade { dem, .. } | Step::Slope { dem, .. } | Step::Aspect { dem, .. } => {
            vec![dem]
        }
        Step::Pansharpen { pan, ms, .. } => std::iter::once(pan.as_str())
            .chain(ms.iter().map(String::as_str))
            .collect(),
    }
}

/// The recipe's leading element-wise steps as one chain, or `None` when it starts otherwise.
fn fuse(
    recipe: &Recipe,
    compiled: &[Option<(Arc<ExprKernel>, Vec<String>)>],
) -> Result<Option<Fused>> {
    let steps = recipe
        .steps
        .iter()
        .take_while(|s| is_element_wise(s))
        .count();
    let prefix = || recipe.steps.iter().zip(compiled).take(steps);
    // Inputs: every name the prefix reads before writing it, in first-read order.
    let mut inputs: Vec<String> = Vec::new();
    let mut written: Vec<&str> = Vec::new();
    for (step, c) in prefix() {
        for name in step_reads(step, c.as_ref(), false) {
            if !written.contains(&name) && !inputs.iter().any(|i| i == name) {
                inputs.push(name.to_string());
            }
        }
        written.extend(step_outputs(step));
    }
    if steps == 0 || inputs.is_empty() {
        return Ok(None);
    }
    let mut current: HashMap<String, usize> = inputs
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    let mut ops = Vec::new();
    let plane = |current: &HashMap<String, usize>, name: &str| {
        current.get(name).copied().ok_or_else(|| missing(name))
    };
    for (step, c) in prefix() {
        let next = inputs.len() + ops.len();
        match step {
            Step::Scale { planes, scaling } => {
                for name in planes {
                    let src = plane(&current, name)?;
                    current.insert(name.clone(), inputs.len() + ops.len());
                    ops.push(ChainOp::Scale {
                        src,
                        scaling: *scaling,
                    });
                }
            }
            Step::Mask { planes, qa, rule } => {
                for name in planes {
                    let (src, qa) = (plane(&current, name)?, plane(&current, qa)?);
                    current.insert(name.clone(), inputs.len() + ops.len());
                    ops.push(ChainOp::Mask {
                        src,
                        qa,
                        rule: rule.clone(),
                    });
                }
            }
            Step::NormalizedDifference { a, b, out } => {
                ops.push(ChainOp::NormalizedDifference {
                    a: plane(&current, a)?,
                    b: plane(&current, b)?,
                });
                current.insert(out.clone(), next);
            }
            Step::Evi {
                nir,
                red,
                blue,
                out,
            } => {
                ops.push(ChainOp::Evi {
                    nir: plane(&current, nir)?,
                    red: plane(&current, red)?,
                    blue: plane(&current, blue)?,
                });
                current.insert(out.clone(), next);
            }
            Step::Savi { nir, red, l, out } => {
                ops.push(ChainOp::Savi {
                    nir: plane(&current, nir)?,
                    red: plane(&current, red)?,
                    l: *l,
                });
                current.insert(out.clone(), next);
            }
            Step::Expr { out, .. } => {
                let Some((kernel, names)) = c else {
                    return Err(EngineError::InvalidInput("expression not compiled".into()));
                };
                // Bands the expression does not read are bound to plane 0: never read.
                let used = kernel.typed().bands_used();
                let bands = names
                    .iter()
                    .enumerate()
                    .map(|(b, n)| {
                        if used.contains(&b) {
                            plane(&current, n)
                        } else {
                            Ok(0)
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                ops.push(ChainOp::Expr {
                    kernel: Arc::clone(kernel),
                    bands,
                });
                current.insert(out.clone(), next);
            }
            _ => {}
        }
    }
    // Outputs: every plane a later step or a recipe output reads.
    let mut needed: Vec<&str> = Vec::new();
    for (step, c) in recipe.steps.iter().zip(compiled).skip(steps) {
        needed.extend(step_reads(step, c.as_ref(), true));
    }
    needed.extend(recipe.outputs.iter().map(|o| o.plane.as_str()));
    let mut outputs: Vec<String> = Vec::new();
    for name in needed {
        if current.contains_key(name) && !outputs.iter().any(|o| o == name) {
            outputs.push(name.to_string());
        }
    }
    let chain = Chain::new(
        inputs.len(),
        ops,
        outputs.iter().map(|n| current[n.as_str()]).collect(),
    )?;
    Ok(Some(Fused {
        steps,
        inputs,
        outputs,
        chain,
    }))
}

/// The names a step writes.
pub fn step_outputs(step: &Step) -> Vec<&str> {
    match step {
        Step::Scale { .. } | Step::Mask { .. } => vec![],
        Step::NormalizedDifference { out, .. }
        | Step::Evi { out, .. }
        | Step::Savi { out, .. }
        | Step::Expr { out, .. }
        | Step::Convolve { out, .. }
        | Step::Hillshade { out, .. }
        | Step::Slope { out, .. }
        | Step::Aspect { out, .. } => vec![out.as_str()],
        Step::Pansharpen { outs, .. } => outs.iter().map(String::as_str).collect(),
    }
}

fn missing(name: &str) -> EngineError {
    EngineError::InvalidInput(format!("recipe uses plane {name:?} before it exists"))
}

fn get<'a>(planes: &'a HashMap<String, TilePlane>, name: &str) -> Result<&'a TilePlane> {
    planes.get(name).ok_or_else(|| missing(name))
}

fn get_mut<'a>(
    planes: &'a mut HashMap<String, TilePlane>,
    name: &str,
) -> Result<&'a mut TilePlane> {
    planes.get_mut(name).ok_or_else(|| missing(name))
}

/// Runs a stencil that consumes `k` px of halo over the whole plane; the output keeps the rest.
fn stencil(
    p: &TilePlane,
    k: usize,
    width_px: usize,
    height_px: usize,
    f: impl FnOnce(Plane<'_>, &mut [f32]) -> Result<(), kernels::KernelError>,
) -> Result<TilePlane> {
    if p.halo_px < k {
        return Err(EngineError::InvalidInput(format!(
            "stencil needs {k} px of halo, the plane has {}",
            p.halo_px
        )));
    }
    let (w, h) = (width_px + 2 * p.halo_px, height_px + 2 * p.halo_px);
    let out_halo = p.halo_px - k;
    let mut o = vec![0.0; (width_px + 2 * out_halo) * (height_px + 2 * out_halo)];
    f(Plane::new(w, h, &p.data)?, &mut o)?;
    Ok(TilePlane {
        halo_px: out_halo,
        data: o,
    })
}

/// The plane cropped to a smaller halo (borrowed when the halo already matches).
fn crop(
    p: &TilePlane,
    halo_px: usize,
    width_px: usize,
    height_px: usize,
) -> Result<Cow<'_, [f32]>> {
    if p.halo_px < halo_px {
        return Err(EngineError::InvalidInput(format!(
            "plane has {} px of halo, {halo_px} needed",
            p.halo_px
        )));
    }
    if p.halo_px == halo_px {
        return Ok(Cow::Borrowed(&p.data));
    }
    let src_w = width_px + 2 * p.halo_px;
    let d = p.halo_px - halo_px;
    let (w, h) = (width_px + 2 * halo_px, height_px + 2 * halo_px);
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let start = (y + d) * src_w + d;
        out.extend_from_slice(&p.data[start..start + w]);
    }
    Ok(Cow::Owned(out))
}

/// The named planes, all at the smallest halo among them.
fn aligned<'a, const N: usize>(
    planes: &'a HashMap<String, TilePlane>,
    names: [&String; N],
    width_px: usize,
    height_px: usize,
) -> Result<[(usize, Cow<'a, [f32]>); N]> {
    let mut halo = usize::MAX;
    for n in names {
        halo = halo.min(get(planes, n)?.halo_px);
    }
    let mut out: [(usize, Cow<'a, [f32]>); N] =
        std::array::from_fn(|_| (0, Cow::Borrowed(&[][..])));
    for (slot, n) in out.iter_mut().zip(names) {
        *slot = (halo, crop(get(planes, n)?, halo, width_px, height_px)?);
    }
    Ok(out)
}
