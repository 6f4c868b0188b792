// The operators' studio at /studio/: rendered in the browser only (it needs the admin token,
// which lives in the tab's sessionStorage), so the export holds just its frame.
import type { Metadata } from "next";
import { StudioApp } from "@/studio/StudioApp";
import "./studio.css";

export const metadata: Metadata = {
  title: "Studio · Radio24",
  robots: { index: false, follow: false },
};

export default function StudioPage() {
  return <StudioApp />;
}
