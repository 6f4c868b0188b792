import { dictionary } from "./dictionary";

export const studio = dictionary({
  en: {},
  ja: {},
});
