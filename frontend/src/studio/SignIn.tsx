"use client";
// The studio's door: the admin token, checked against /v1/studio/health before it is kept.
import { useState } from "react";
import { mutate } from "swr";
import { ApiError, request } from "@/api/client";
import { keys } from "@/api/hooks";
import { Health } from "@/api/schemas";
import { useI18n } from "@/i18n";
import { describeError } from "./format";

export function SignIn({ onSignedIn, notice }: { onSignedIn: (token: string) => void; notice?: string | null }) {
  const { t } = useI18n();
  const [value, setValue] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<"empty" | "wrong" | { cause: unknown } | null>(null);

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    const token = value.trim();
    if (!token) {
      setError("empty");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const health = await request(keys.studioHealth, Health, { token });
      // The console opens with the health it would fetch first already known.
      void mutate([keys.studioHealth, token], health, { revalidate: false });
      onSignedIn(token);
    } catch (cause) {
      setError(cause instanceof ApiError && cause.status === 401 ? "wrong" : { cause });
      setBusy(false);
    }
  };

  const errorText =
    error === "empty"
      ? t("studio.signIn.empty")
      : error === "wrong"
        ? t("studio.signIn.wrong")
        : error
          ? describeError(error.cause, t)
          : null;

  return (
    <main className="page studio-signin">
      <form className="panel signin-card" onSubmit={submit} noValidate aria-labelledby="signin-title">
        <span className="signin-mark" aria-hidden="true">
          ●
        </span>
        <h1 id="signin-title">{t("studio.signIn.title")}</h1>
        <p className="muted">{t("studio.signIn.intro")}</p>
        {notice && (
          <p className="notice" role="status">
            {notice}
          </p>
        )}
        <div className="field">
          <label htmlFor="admin-token">{t("studio.signIn.label")}</label>
          <input
            id="admin-token"
            name="admin-token"
            type="password"
            autoComplete="current-password"
            spellCheck={false}
            value={value}
            onChange={(e) => setValue(e.target.value)}
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? "admin-token-error admin-token-hint" : "admin-token-hint"}
            autoFocus
            required
          />
          <span id="admin-token-hint" className="small muted">
            {t("studio.signIn.hint")}
          </span>
        </div>
        <p id="admin-token-error" className="error-text" role="alert">
          {errorText}
        </p>
        <button type="submit" className="btn btn-primary signin-submit" data-testid="sign-in" disabled={busy}>
          {busy ? t("studio.signIn.checking") : t("studio.signIn.submit")}
        </button>
      </form>
    </main>
  );
}
