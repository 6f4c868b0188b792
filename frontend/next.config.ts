import type { NextConfig } from "next";
import { PHASE_DEVELOPMENT_SERVER } from "next/constants";

// The station's API when the page is served by `npm run dev` (port 3000) instead of by the
// radio24 binary itself. HTTP requests go through the dev server's rewrites (same origin, no
// CORS needed); WebSockets and the audio stream go straight to it.
const devApi = process.env.RADIO24_API ?? "http://127.0.0.1:8080";

export default function config(phase: string): NextConfig {
  const dev = phase === PHASE_DEVELOPMENT_SERVER;
  return {
    // A static export: the radio24 binary serves `out/` at / (server.web_dir).
    output: "export",
    // `/studio/index.html` rather than `/studio.html`, so a plain file server finds it.
    trailingSlash: true,
    reactStrictMode: true,
    poweredByHeader: false,
    images: { unoptimized: true },
    // Nothing of Next's own telemetry or lint step is needed to build the export.
    eslint: { ignoreDuringBuilds: true },
    env: { NEXT_PUBLIC_RADIO24_WS_ORIGIN: dev ? devApi.replace(/^http/, "ws") : "" },
    ...(dev
      ? {
          output: undefined,
          async rewrites() {
            return ["/v1/:path*", "/health", "/ready"].map((source) => ({
              source,
              destination: `${devApi}${source}`,
            }));
          },
        }
      : {}),
  };
}
