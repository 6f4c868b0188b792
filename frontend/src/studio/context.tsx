"use client";
// What every studio panel needs: the admin token, the channel it works on, and one way to
// call the API that signs the operator out when the token stops being accepted.
import { createContext, useCallback, useContext, useMemo } from "react";
import { ApiError } from "@/api/client";

interface Studio {
  token: string;
  channel: string;
  /** Runs an API call; a 401 signs out (and is rethrown for the caller's own message). */
  call: <T>(run: (token: string) => Promise<T>) => Promise<T>;
}

const StudioContext = createContext<Studio | null>(null);

export function StudioProvider({
  token,
  channel,
  onUnauthorized,
  children,
}: {
  token: string;
  channel: string;
  onUnauthorized: () => void;
  children: React.ReactNode;
}) {
  const call = useCallback(
    async <T,>(run: (token: string) => Promise<T>): Promise<T> => {
      try {
        return await run(token);
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) onUnauthorized();
        throw error;
      }
    },
    [token, onUnauthorized],
  );
  const value = useMemo(() => ({ token, channel, call }), [token, channel, call]);
  return <StudioContext.Provider value={value}>{children}</StudioContext.Provider>;
}

export function useStudio(): Studio {
  const value = useContext(StudioContext);
  if (!value) throw new Error("useStudio outside StudioProvider");
  return value;
}
