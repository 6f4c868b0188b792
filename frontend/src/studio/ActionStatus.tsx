"use client";
// The line under a control that says how its last action went (a status region, so screen
// readers hear it).
import { useI18n } from "@/i18n";
import { noteText, type Note } from "./format";

export function ActionStatus({ note, testId, id }: { note: Note | null; testId: string; id?: string }) {
  const { t } = useI18n();
  return (
    <p id={id} data-testid={testId} role="status" className={`action-status ${note ? `action-${note.tone}` : ""}`}>
      {note && noteText(note, t)}
    </p>
  );
}
