"use client";
// Japanese and English. The language comes from the browser's first, until the listener
// picks one with the toggle; that choice is remembered (localStorage). Each page's words are
// in a file of their own; `ja` must have every key `en` has (the type says so).
import { createContext, useCallback, useContext, useEffect, useMemo, useState } from "react";
import { common } from "./common";
import { listener } from "./listener";
import { studio } from "./studio";

export const LANGS = ["ja", "en"] as const;
export type Lang = (typeof LANGS)[number];

const messages = {
  en: { ...common.en, ...listener.en, ...studio.en },
  ja: { ...common.ja, ...listener.ja, ...studio.ja },
};
export type MessageKey = keyof (typeof messages)["en"];

const STORAGE_KEY = "radio24.lang";

function browserLang(): Lang {
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = tag.toLowerCase().split("-")[0];
    if (base === "ja" || base === "en") return base;
  }
  return "en";
}

type Vars = Record<string, string | number>;

interface I18n {
  lang: Lang;
  setLang: (lang: Lang) => void;
  /** The message for `key`, with `{name}` placeholders filled from `vars`. */
  t: (key: MessageKey, vars?: Vars) => string;
}

const I18nContext = createContext<I18n | null>(null);

export function I18nProvider({ children }: { children: React.ReactNode }) {
  // The static export is rendered in English; the browser's language is applied on mount.
  const [lang, setLangState] = useState<Lang>("en");
  useEffect(() => {
    const saved = localStorage.getItem(STORAGE_KEY);
    setLangState(saved === "ja" || saved === "en" ? saved : browserLang());
  }, []);
  useEffect(() => {
    document.documentElement.lang = lang;
  }, [lang]);
  const setLang = useCallback((next: Lang) => {
    localStorage.setItem(STORAGE_KEY, next);
    setLangState(next);
  }, []);
  const t = useCallback(
    (key: MessageKey, vars?: Vars) => {
      const text: string = messages[lang][key];
      return vars ? text.replace(/\{(\w+)\}/g, (_, name: string) => String(vars[name] ?? "")) : text;
    },
    [lang],
  );
  const value = useMemo(() => ({ lang, setLang, t }), [lang, setLang, t]);
  return <I18nContext.Provider value={value}>{children}</I18nContext.Provider>;
}

export function useI18n(): I18n {
  const value = useContext(I18nContext);
  if (!value) throw new Error("useI18n outside I18nProvider");
  return value;
}
