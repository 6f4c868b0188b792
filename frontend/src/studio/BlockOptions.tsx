"use client";
// The six blocks as `<option>`s, in their translated names.
import { BLOCKS } from "@/api/schemas";
import { useI18n } from "@/i18n";

export function BlockOptions() {
  const { t } = useI18n();
  return BLOCKS.map((b) => (
    <option key={b} value={b}>
      {t(`block.${b}`)}
    </option>
  ));
}
