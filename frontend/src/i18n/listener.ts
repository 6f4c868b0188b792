import { dictionary } from "./dictionary";

export const listener = dictionary({
  en: {},
  ja: {},
});
