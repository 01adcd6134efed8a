// Jobs-list filter form; edits a draft and applies it to the URL on submit.
import { useId, useState, type FormEvent } from 'react';
import { JOB_STATES } from '../api/types';
import { activeFilterCount, EMPTY_FILTER, parseBbox, type JobFilter } from '../lib/filters';
import { isoToLocalInput, localInputToIso } from '../lib/format';

interface Props {
  initial: JobFilter;
  recipes: string[];
  onApply: (filter: JobFilter) => void;
}

export function JobFilters({ initial, recipes, onApply }: Props) {
  const id = useId();
  const [draft, setDraft] = useState(initial);
  const [bbox_text, setBboxText] = useState(initial.bbox?.join(',') ?? '');
  const bbox = parseBbox(bbox_text);
  const bbox_invalid = bbox_text.trim() !== '' && bbox === null;
  // On a phone the form starts folded behind a button (styles.css), so the list is on the first screen.
  const [open, setOpen] = useState(false);
  const active = activeFilterCount(initial);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (bbox_invalid) return;
    onApply({ ...draft, bbox });
  };

  const reset = () => {
    setDraft(EMPTY_FILTER);
    setBboxText('');
    onApply(EMPTY_FILTER);
  };

  const toggleState = (state: JobFilter['state'][number], on: boolean) =>
    setDraft((d) => ({ ...d, state: JOB_STATES.filter((s) => (s === state ? on : d.state.includes(s))) }));

  return (
    <>
      <button
        type="button"
        className="filters-toggle"
        aria-expanded={open}
        aria-controls={`${id}-filters`}
        onClick={() => setOpen(!open)}
      >
        Filters{active > 0 ? ` (${active} active)` : ''}
      </button>
      <form
        id={`${id}-filters`}
        className={open ? 'filters' : 'filters filters-folded'}
        onSubmit={submit}
        aria-label="job filters"
      >
        <fieldset className="states">
          <legend>State</legend>
          {JOB_STATES.map((state) => (
            <label key={state} className="check">
              <input
                type="checkbox"
                checked={draft.state.includes(state)}
                onChange={(e) => toggleState(state, e.target.checked)}
              />
              {state}
            </label>
          ))}
        </fieldset>
        <div className="field">
          <label htmlFor={`${id}-recipe`}>Recipe</label>
          <input
            id={`${id}-recipe`}
            list={`${id}-recipes`}
            value={draft.recipe}
            onChange={(e) => setDraft({ ...draft, recipe: e.target.value })}
          />
          <datalist id={`${id}-recipes`}>
            {recipes.map((name) => (
              <option key={name} value={name} />
            ))}
          </datalist>
        </div>
        <div className="field">
          <label htmlFor={`${id}-q`}>Search</label>
          <input
            id={`${id}-q`}
            type="search"
            value={draft.q}
            onChange={(e) => setDraft({ ...draft, q: e.target.value })}
          />
        </div>
        <div className="field">
          <label htmlFor={`${id}-after`}>Created after</label>
          <input
            id={`${id}-after`}
            type="datetime-local"
            value={isoToLocalInput(draft.created_after)}
            onChange={(e) => setDraft({ ...draft, created_after: localInputToIso(e.target.value) })}
          />
        </div>
        <div className="field">
          <label htmlFor={`${id}-before`}>Created before</label>
          <input
            id={`${id}-before`}
            type="datetime-local"
            value={isoToLocalInput(draft.created_before)}
            onChange={(e) => setDraft({ ...draft, created_before: localInputToIso(e.target.value) })}
          />
        </div>
        <div className="field">
          <label htmlFor={`${id}-bbox`}>Intersects bbox (min lon, min lat, max lon, max lat)</label>
          <input
            id={`${id}-bbox`}
            inputMode="decimal"
            placeholder="e.g. 5.9,45.8,10.5,47.8"
            value={bbox_text}
            aria-invalid={bbox_invalid}
            aria-describedby={bbox_invalid ? `${id}-bbox-error` : undefined}
            onChange={(e) => setBboxText(e.target.value)}
          />
          {bbox_invalid && (
            <p className="field-error" id={`${id}-bbox-error`}>
              four numbers in degrees, min before max
            </p>
          )}
        </div>
        <div className="actions">
          <button type="submit" className="primary">
            Apply filters
          </button>
          <button type="button" onClick={reset}>
            Reset
          </button>
        </div>
      </form>
    </>
  );
}
