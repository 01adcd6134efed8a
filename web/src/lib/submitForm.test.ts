// Tests for the submit form model: request body construction, validation and field-error routing.
import { describe, expect, it } from 'vitest';
import { buildCreateJob, INITIAL_FORM, messagesFor, normalizeField, withRecipe, type SubmitForm } from './submitForm';

const recipe = { name: 'ndvi-landsat-c2l2', description: 'NDVI', roles: ['red', 'nir', 'qa'], outputs: ['ndvi'] };

describe('submit form', () => {
  it('prefills one input row per role of the picked recipe', () => {
    const form = withRecipe(INITIAL_FORM, recipe);
    expect(form.recipe).toBe('ndvi-landsat-c2l2');
    expect(form.inputs.map((row) => row.role)).toEqual(['red', 'nir', 'qa']);
  });

  it('keeps inputs the user already typed when the recipe changes', () => {
    const typed: SubmitForm = { ...INITIAL_FORM, inputs: [{ role: '', path: '/d/a.tif', band: '' }] };
    expect(withRecipe(typed, recipe).inputs).toEqual(typed.inputs);
  });

  it('builds a complete body with numbers, params and the AOI polygon', () => {
    const form: SubmitForm = {
      ...INITIAL_FORM,
      mode: 'expr',
      expr: ' (nir - red) / (nir + red) ',
      inputs: [
        { role: 'red', path: '/d/a.tif', band: '3' },
        { role: '', path: ' /d/b.tif ', band: '' },
      ],
      params: [
        { key: 'gain', value: '2' },
        { key: ' ', value: 'ignored' },
      ],
      priority: '5',
      tile_px: '256',
      max_attempts: '4',
      compression: 'zstd',
      nodata: '-9999',
      aoi: [1, 2, 3, 4],
    };
    const built = buildCreateJob(form);
    expect(built).toEqual({
      body: {
        expr: '(nir - red) / (nir + red)',
        inputs: [{ role: 'red', path: '/d/a.tif', band: 3 }, { path: '/d/b.tif' }],
        params: { gain: '2' },
        priority: 5,
        tile_px: 256,
        max_attempts: 4,
        compression: 'zstd',
        nodata: -9999,
        aoi: {
          type: 'Polygon',
          coordinates: [
            [
              [1, 2],
              [3, 2],
              [3, 4],
              [1, 4],
              [1, 2],
            ],
          ],
        },
      },
    });
    expect('body' in built && 'recipe' in built.body).toBe(false);
  });

  it('reports missing and malformed fields by the names the server uses', () => {
    const built = buildCreateJob({
      ...INITIAL_FORM,
      inputs: [
        { role: 'red', path: '', band: '1.5' },
        { role: 'nir', path: '/x.tif', band: '0' },
      ],
      priority: 'high',
    });
    expect('errors' in built && built.errors.map((e) => e.field)).toEqual([
      'recipe',
      'inputs.0.path',
      'inputs.0.band',
      'inputs.1.band',
      'priority',
    ]);
  });

  it('matches server field names in any common notation', () => {
    expect(normalizeField('inputs[2].path')).toBe('inputs.2.path');
    expect(normalizeField('/inputs/2/path')).toBe('inputs.2.path');
    const errors = [
      { field: 'inputs[0].path', message: 'no such file' },
      { field: 'expr', message: 'invalid expression at column 3' },
      { field: 'inputs.0.path', message: 'not readable' },
    ];
    expect(messagesFor(errors, 'inputs.0.path')).toEqual(['no such file', 'not readable']);
    expect(messagesFor(errors, 'inputs.1.path')).toEqual([]);
  });
});
