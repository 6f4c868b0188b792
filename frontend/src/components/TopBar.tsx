"use client";
// The bar on top of every page: the station's name, the pages, and the language toggle.
import Link from "next/link";
import { useI18n } from "@/i18n";

export function TopBar({ current, children }: { current: "listen" | "studio"; children?: React.ReactNode }) {
  const { t, lang, setLang } = useI18n();
  return (
    <header className="topbar">
      <div className="brand">
        <span className="brand-mark" aria-hidden="true">24</span>
        <span>Radio24</span>
      </div>
      {children}
      <nav aria-label="Radio24">
        <Link href="/" aria-current={current === "listen" ? "page" : undefined}>
          {t("nav.listen")}
        </Link>
        <Link href="/studio/" aria-current={current === "studio" ? "page" : undefined}>
          {t("nav.studio")}
        </Link>
        <button
          type="button"
          className="btn btn-small btn-ghost"
          data-testid="lang-toggle"
          aria-label={t("lang.toggleLabel")}
          onClick={() => setLang(lang === "ja" ? "en" : "ja")}
          lang={lang === "ja" ? "en" : "ja"}
        >
          {t("lang.toggle")}
        </button>
      </nav>
    </header>
  );
}
