// Error messages under one form field, referenced by the field's aria-describedby (`<id>-error`).
export function FieldMessages({ id, messages }: { id: string; messages: string[] }) {
  if (messages.length === 0) return null;
  return (
    <p className="field-error" id={`${id}-error`}>
      {messages.join('; ')}
    </p>
  );
}
