"use client";
// The admin token, for this tab only: sessionStorage is per tab and forgotten when the tab
// closes, so a token typed on a shared machine does not outlive the session.
import { useCallback, useEffect, useState } from "react";

const KEY = "radio24.studio.token";

function read(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: the token lives in memory only
  }
}

function write(token: string | null) {
  try {
    if (token === null) sessionStorage.removeItem(KEY);
    else sessionStorage.setItem(KEY, token);
  } catch {
    // storage disabled: nothing to keep or forget
  }
}

/** `token` is `undefined` until the tab's storage has been read (the export renders without it). */
export function useAdminToken() {
  const [token, setToken] = useState<string | null | undefined>(undefined);
  useEffect(() => setToken(read()), []);
  const signIn = useCallback((value: string) => {
    write(value);
    setToken(value);
  }, []);
  const signOut = useCallback(() => {
    write(null);
    setToken(null);
  }, []);
  return { token, signIn, signOut };
}
