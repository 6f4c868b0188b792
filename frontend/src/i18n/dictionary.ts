/** A dictionary in both languages: Japanese must say everything English says. */
export function dictionary<const T extends Record<string, string>>(d: {
  en: T;
  ja: { [K in keyof T]: string };
}) {
  return d;
}
