// Talking to the station's API: one `request` that parses every answer through its schema
// and turns error answers into `ApiError` (docs/api.md: `{"error", "message"}`).
import type { z } from "zod";
import { ErrorBody } from "./schemas";

/** An answer that was not a success, or a network failure (`status` 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** Where the page's WebSockets go: the page's own origin, or the API's under `npm run dev`. */
export function wsUrl(path: string): string {
  const origin =
    process.env.NEXT_PUBLIC_RADIO24_WS_ORIGIN ||
    `${window.location.protocol === "https:" ? "wss:" : "ws:"}//${window.location.host}`;
  return `${origin}${path}`;
}

export interface RequestOptions {
  method?: "GET" | "POST" | "PUT" | "PATCH";
  body?: unknown;
  /** The studio's admin token, sent as `Authorization: Bearer`. */
  token?: string | null;
  signal?: AbortSignal;
}

async function send(path: string, options: RequestOptions): Promise<Response> {
  const headers: Record<string, string> = {};
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  let response: Response;
  try {
    response = await fetch(path, {
      method: options.method ?? "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
      cache: "no-store",
    });
  } catch (cause) {
    if (cause instanceof DOMException && cause.name === "AbortError") throw cause;
    throw new ApiError(0, "network", "The station cannot be reached.");
  }
  if (!response.ok) {
    const body = ErrorBody.safeParse(await response.json().catch(() => null));
    throw body.success
      ? new ApiError(response.status, body.data.error, body.data.message)
      : new ApiError(response.status, "http_" + response.status, response.statusText);
  }
  return response;
}

/** A JSON request whose answer must match `schema`. */
export async function request<T extends z.ZodType>(
  path: string,
  schema: T,
  options: RequestOptions = {},
): Promise<z.infer<T>> {
  const response = await send(path, options);
  const parsed = schema.safeParse(await response.json());
  if (!parsed.success) {
    // The API changed under the app: say where, loudly (the browser tests fail on it).
    console.error(`radio24: unexpected answer from ${path}`, parsed.error.issues);
    throw new ApiError(response.status, "unexpected_answer", `Unexpected answer from ${path}`);
  }
  return parsed.data;
}

/** A request whose answer is a file (the studio's recordings). */
export async function requestBlob(path: string, options: RequestOptions = {}): Promise<Blob> {
  return (await send(path, options)).blob();
}

/** Parses one WebSocket text frame with `schema`, or logs why it cannot. */
export function parseFrame<T extends z.ZodType>(schema: T, data: unknown): z.infer<T> | null {
  if (typeof data !== "string") return null;
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    console.error("radio24: a frame that is not JSON");
    return null;
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    console.error("radio24: unexpected frame", parsed.error.issues);
    return null;
  }
  return parsed.data;
}
