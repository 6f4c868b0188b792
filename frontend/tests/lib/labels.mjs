// What the pages show for each block in English (src/i18n/common.ts), so a test can find a
// block on a page in either form: its label or its code.
export const BLOCKS = ["OP", "NEWS", "QANDA", "MUSIC", "TOPIC_A", "JINGLE"];

export const BLOCK_LABEL_EN = {
  OP: "Opening",
  NEWS: "News",
  QANDA: "Call-ins",
  MUSIC: "Music",
  TOPIC_A: "Talk",
  JINGLE: "Jingle",
};

/** Whether `text` names `block` (its English label or its code). */
export function namesBlock(text, block) {
  return text.includes(BLOCK_LABEL_EN[block]) || text.includes(block);
}

/** A short random code to find a test's own text among everything else on air. */
export function marker() {
  return Math.random().toString(36).slice(2, 8);
}
