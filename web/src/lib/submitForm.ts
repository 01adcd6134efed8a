// Submit-form model: turns the form's text fields into a CreateJob body, and routes server field errors to fields.
import type { CreateJob, FieldError, Recipe } from '../api/types';
import { bboxToPolygon } from './aoi';
import type { BBox } from './filters';

export interface InputRow {
  role: string;
  path: string;
  band: string;
}

export interface ParamRow {
  key: string;
  value: string;
}

export interface SubmitForm {
  mode: 'recipe' | 'expr';
  recipe: string;
  expr: string;
  inputs: InputRow[];
  params: ParamRow[];
  priority: string;
  tile_px: string;
  max_attempts: string;
  compression: '' | 'deflate' | 'zstd';
  nodata: string;
  aoi: BBox | null;
}

export const INITIAL_FORM: SubmitForm = {
  mode: 'recipe',
  recipe: '',
  expr: '',
  inputs: [{ role: '', path: '', band: '' }],
  params: [],
  priority: '0',
  tile_px: '512',
  max_attempts: '',
  compression: '',
  nodata: '',
  aoi: null,
};

/** Form state for a newly picked recipe: one input row per role (the catalog lists no parameters). */
export function withRecipe(form: SubmitForm, recipe: Recipe): SubmitForm {
  const has_paths = form.inputs.some((row) => row.path.trim() !== '');
  return {
    ...form,
    recipe: recipe.name,
    inputs: has_paths ? form.inputs : recipe.roles.map((role) => ({ role, path: '', band: '' })),
  };
}

function parseNumber(text: string, field: string, errors: FieldError[], integer: boolean): number | undefined {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  const value = Number(trimmed);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    errors.push({ field, message: integer ? 'must be a whole number' : 'must be a number' });
    return undefined;
  }
  return value;
}

/** The request body, or the field errors found before sending. */
export function buildCreateJob(form: SubmitForm): { body: CreateJob } | { errors: FieldError[] } {
  const errors: FieldError[] = [];
  const body: CreateJob = { inputs: [] };
  if (form.mode === 'recipe') {
    if (!form.recipe.trim()) errors.push({ field: 'recipe', message: 'pick a recipe' });
    body.recipe = form.recipe.trim();
  } else {
    if (!form.expr.trim()) errors.push({ field: 'expr', message: 'write an expression' });
    body.expr = form.expr.trim();
  }
  // Every row is sent, so the server's "inputs.N" field names match the rows on screen.
  if (form.inputs.length === 0) errors.push({ field: 'inputs', message: 'add at least one input' });
  form.inputs.forEach((row, i) => {
    if (!row.path.trim()) errors.push({ field: `inputs.${i}.path`, message: 'path is required' });
    const band = parseNumber(row.band, `inputs.${i}.band`, errors, true);
    if (band !== undefined && band < 1) errors.push({ field: `inputs.${i}.band`, message: 'bands count from 1' });
    body.inputs.push({
      ...(row.role.trim() ? { role: row.role.trim() } : {}),
      path: row.path.trim(),
      ...(band !== undefined ? { band } : {}),
    });
  });
  const params = form.params.filter((row) => row.key.trim());
  if (params.length > 0) body.params = Object.fromEntries(params.map((row) => [row.key.trim(), row.value]));
  const priority = parseNumber(form.priority, 'priority', errors, true);
  if (priority !== undefined) body.priority = priority;
  const tile_px = parseNumber(form.tile_px, 'tile_px', errors, true);
  if (tile_px !== undefined) body.tile_px = tile_px;
  const max_attempts = parseNumber(form.max_attempts, 'max_attempts', errors, true);
  if (max_attempts !== undefined) body.max_attempts = max_attempts;
  if (form.compression) body.compression = form.compression;
  const nodata = parseNumber(form.nodata, 'nodata', errors, false);
  if (nodata !== undefined) body.nodata = nodata;
  if (form.aoi) body.aoi = bboxToPolygon(form.aoi);
  return errors.length > 0 ? { errors } : { body };
}

/** "inputs[0].path", "/inputs/0/path" and "inputs.0.path" all name the same field. */
export function normalizeField(field: string): string {
  return field
    .replace(/\[(\d+)\]/g, '.$1')
    .replace(/\//g, '.')
    .replace(/^\.+|\.+$/g, '');
}

/** Messages for one field from a list of field errors. */
export function messagesFor(errors: FieldError[], field: string): string[] {
  return errors.filter((error) => normalizeField(error.field) === field).map((error) => error.message);
}
