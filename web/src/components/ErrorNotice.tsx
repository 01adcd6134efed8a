// Shows a failed request: a problem+json's detail and field errors, or a plain error message.
import { ProblemError } from '../api/client';

export function ErrorNotice({ error, heading }: { error: unknown; heading?: string }) {
  if (!error) return null;
  const problem = error instanceof ProblemError ? error : null;
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div className="notice notice-error" role="alert">
      {heading && <strong>{heading}: </strong>}
      <span>{problem ? problem.detail || problem.title : message}</span>
      {problem && problem.field_errors.length > 0 && (
        <ul>
          {problem.field_errors.map((field_error) => (
            <li key={`${field_error.field}:${field_error.message}`}>
              <code>{field_error.field}</code>: {field_error.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
