// Submit page: recipe or expression, inputs, params, options and an optional AOI rectangle; shows server problems.
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, ProblemError } from '../api/client';
import { keys, useRecipes } from '../api/queries';
import type { CreateJob, FieldError } from '../api/types';
import { ErrorNotice } from '../components/ErrorNotice';
import { FieldMessages } from '../components/FieldMessages';
import { AoiFields } from './AoiFields';
import { buildCreateJob, INITIAL_FORM, messagesFor, withRecipe, type SubmitForm } from '../lib/submitForm';
import { navigate } from '../router';

export function SubmitPage() {
  const client = useQueryClient();
  const recipes = useRecipes();
  const [form, setForm] = useState<SubmitForm>(INITIAL_FORM);
  const [local_errors, setLocalErrors] = useState<FieldError[]>([]);
  const create = useMutation({
    mutationFn: (body: CreateJob) => api.createJob(body),
    onSuccess: (job) => {
      client.setQueryData(keys.job(job.id), job);
      void client.invalidateQueries({ queryKey: keys.jobLists });
      navigate(`/jobs/${job.id}`);
    },
  });
  const server_errors = create.error instanceof ProblemError ? create.error.field_errors : [];
  const errors = [...local_errors, ...server_errors];
  const fieldProps = (field: string, id: string) => {
    const messages = messagesFor(errors, field);
    return {
      id,
      'aria-invalid': messages.length > 0 || undefined,
      'aria-describedby': messages.length > 0 ? `${id}-error` : undefined,
    };
  };
  const update = (patch: Partial<SubmitForm>) => setForm((current) => ({ ...current, ...patch }));
  const recipe = recipes.data?.items.find((r) => r.name === form.recipe);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const built = buildCreateJob(form);
    if ('errors' in built) {
      setLocalErrors(built.errors);
      return;
    }
    setLocalErrors([]);
    create.mutate(built.body);
  };

  return (
    <>
      <h1>Submit a job</h1>
      <form className="submit-form" onSubmit={submit} noValidate aria-describedby="submit-errors">
        <div id="submit-errors">
          {local_errors.length > 0 && (
            <div className="notice notice-error" role="alert">
              <span>fix the marked fields</span>
              <ul>
                {local_errors.map((e) => (
                  <li key={`${e.field}:${e.message}`}>
                    <code>{e.field}</code>: {e.message}
                  </li>
                ))}
              </ul>
            </div>
          )}
          <ErrorNotice error={create.error} heading="the server rejected the job" />
        </div>

        <fieldset>
          <legend>What to compute</legend>
          <div className="radio-row">
            <label className="check">
              <input
                type="radio"
                name="mode"
                checked={form.mode === 'recipe'}
                onChange={() => update({ mode: 'recipe' })}
              />
              Recipe
            </label>
            <label className="check">
              <input
                type="radio"
                name="mode"
                checked={form.mode === 'expr'}
                onChange={() => update({ mode: 'expr' })}
              />
              Expression
            </label>
          </div>
          {form.mode === 'recipe' ? (
            <div className="field">
              <label htmlFor="recipe">Recipe</label>
              <select
                {...fieldProps('recipe', 'recipe')}
                value={form.recipe}
                onChange={(e) => {
                  const picked = recipes.data?.items.find((r) => r.name === e.target.value);
                  setForm(picked ? withRecipe(form, picked) : { ...form, recipe: '' });
                }}
              >
                <option value="">{recipes.isPending ? 'loading recipes…' : 'choose a recipe'}</option>
                {recipes.data?.items.map((r) => (
                  <option key={r.name} value={r.name}>
                    {r.name}
                  </option>
                ))}
              </select>
              <FieldMessages id="recipe" messages={messagesFor(errors, 'recipe')} />
              {recipe && (
                <p className="hint">
                  {recipe.description} Reads {recipe.roles.join(', ')}; writes {recipe.outputs.join(', ')}.
                </p>
              )}
              <ErrorNotice error={recipes.error} heading="could not load recipes" />
            </div>
          ) : (
            <div className="field">
              <label htmlFor="expr">Expression</label>
              <textarea
                {...fieldProps('expr', 'expr')}
                className="mono"
                rows={3}
                placeholder="(nir - red) / (nir + red)"
                value={form.expr}
                onChange={(e) => update({ expr: e.target.value })}
              />
              <FieldMessages id="expr" messages={messagesFor(errors, 'expr')} />
            </div>
          )}
        </fieldset>

        <fieldset>
          <legend>Inputs</legend>
          <FieldMessages id="inputs" messages={messagesFor(errors, 'inputs')} />
          {form.inputs.map((row, i) => {
            const set = (patch: Partial<typeof row>) =>
              update({ inputs: form.inputs.map((r, j) => (j === i ? { ...r, ...patch } : r)) });
            return (
              <div className="row" key={i} role="group" aria-label={`input ${i + 1}`}>
                <div className="field">
                  <label htmlFor={`input-${i}-role`}>Role</label>
                  <input
                    {...fieldProps(`inputs.${i}.role`, `input-${i}-role`)}
                    value={row.role}
                    placeholder="red"
                    onChange={(e) => set({ role: e.target.value })}
                  />
                  <FieldMessages id={`input-${i}-role`} messages={messagesFor(errors, `inputs.${i}.role`)} />
                </div>
                <div className="field grow">
                  <label htmlFor={`input-${i}-path`}>Path</label>
                  <input
                    {...fieldProps(`inputs.${i}.path`, `input-${i}-path`)}
                    className="mono"
                    value={row.path}
                    placeholder="/data/scene/B04.tif"
                    onChange={(e) => set({ path: e.target.value })}
                  />
                  <FieldMessages id={`input-${i}-path`} messages={messagesFor(errors, `inputs.${i}.path`)} />
                </div>
                <div className="field narrow">
                  <label htmlFor={`input-${i}-band`}>Band</label>
                  <input
                    {...fieldProps(`inputs.${i}.band`, `input-${i}-band`)}
                    inputMode="numeric"
                    value={row.band}
                    onChange={(e) => set({ band: e.target.value })}
                  />
                  <FieldMessages id={`input-${i}-band`} messages={messagesFor(errors, `inputs.${i}.band`)} />
                </div>
                <button
                  type="button"
                  className="remove"
                  aria-label={`remove input ${i + 1}`}
                  onClick={() => update({ inputs: form.inputs.filter((_, j) => j !== i) })}
                >
                  Remove
                </button>
              </div>
            );
          })}
          <button type="button" onClick={() => update({ inputs: [...form.inputs, { role: '', path: '', band: '' }] })}>
            Add input
          </button>
        </fieldset>

        <fieldset>
          <legend>Parameters</legend>
          {form.params.map((row, i) => {
            const set = (patch: Partial<typeof row>) =>
              update({ params: form.params.map((r, j) => (j === i ? { ...r, ...patch } : r)) });
            return (
              <div className="row" key={i} role="group" aria-label={`parameter ${i + 1}`}>
                <div className="field">
                  <label htmlFor={`param-${i}-key`}>Name</label>
                  <input id={`param-${i}-key`} value={row.key} onChange={(e) => set({ key: e.target.value })} />
                </div>
                <div className="field grow">
                  <label htmlFor={`param-${i}-value`}>Value</label>
                  <input
                    {...fieldProps(`params.${row.key}`, `param-${i}-value`)}
                    value={row.value}
                    onChange={(e) => set({ value: e.target.value })}
                  />
                  <FieldMessages id={`param-${i}-value`} messages={messagesFor(errors, `params.${row.key}`)} />
                </div>
                <button
                  type="button"
                  className="remove"
                  aria-label={`remove parameter ${i + 1}`}
                  onClick={() => update({ params: form.params.filter((_, j) => j !== i) })}
                >
                  Remove
                </button>
              </div>
            );
          })}
          <button type="button" onClick={() => update({ params: [...form.params, { key: '', value: '' }] })}>
            Add parameter
          </button>
        </fieldset>

        <fieldset>
          <legend>Options</legend>
          <div className="row">
            <NumberField
              label="Priority"
              field="priority"
              value={form.priority}
              onChange={(v) => update({ priority: v })}
              fieldProps={fieldProps}
              errors={errors}
            />
            <div className="field">
              <label htmlFor="tile_px">Tile size (px)</label>
              <select
                {...fieldProps('tile_px', 'tile_px')}
                value={form.tile_px}
                onChange={(e) => update({ tile_px: e.target.value })}
              >
                {['256', '512', '1024', '2048'].map((size) => (
                  <option key={size} value={size}>
                    {size}
                  </option>
                ))}
              </select>
              <FieldMessages id="tile_px" messages={messagesFor(errors, 'tile_px')} />
            </div>
            <NumberField
              label="Max attempts"
              field="max_attempts"
              value={form.max_attempts}
              onChange={(v) => update({ max_attempts: v })}
              fieldProps={fieldProps}
              errors={errors}
            />
            <div className="field">
              <label htmlFor="compression">Compression</label>
              <select
                {...fieldProps('compression', 'compression')}
                value={form.compression}
                onChange={(e) => update({ compression: e.target.value as SubmitForm['compression'] })}
              >
                <option value="">server default</option>
                <option value="deflate">deflate</option>
                <option value="zstd">zstd</option>
              </select>
            </div>
            <NumberField
              label="Nodata"
              field="nodata"
              value={form.nodata}
              onChange={(v) => update({ nodata: v })}
              fieldProps={fieldProps}
              errors={errors}
            />
          </div>
        </fieldset>

        <AoiFields value={form.aoi} onChange={(aoi) => update({ aoi })} messages={messagesFor(errors, 'aoi')} />

        <div className="actions">
          <button type="submit" className="primary" disabled={create.isPending}>
            {create.isPending ? 'Submitting…' : 'Submit job'}
          </button>
        </div>
      </form>
    </>
  );
}

interface NumberFieldProps {
  label: string;
  field: string;
  value: string;
  onChange: (value: string) => void;
  fieldProps: (field: string, id: string) => object;
  errors: FieldError[];
}

function NumberField({ label, field, value, onChange, fieldProps, errors }: NumberFieldProps) {
  return (
    <div className="field narrow">
      <label htmlFor={field}>{label}</label>
      <input
        {...fieldProps(field, field)}
        inputMode="decimal"
        value={value}
        onChange={(e) => onChange(e.target.value)}
      />
      <FieldMessages id={field} messages={messagesFor(errors, field)} />
    </div>
  );
}
