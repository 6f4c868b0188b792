//! The offline writer: scripts from built-in templates, in Japanese or English. Needs no
//! network, never fails, and is every other writer's fallback. NEWS reads the configured
//! feeds' headlines verbatim when there are any, and says there is no news when there are
//! none — it never invents a headline.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use super::{NewsItem, ScriptBrief, ScriptWriter, WriterError};
use crate::domain::Block;

/// How many headlines the NEWS template reads: about the length of a short bulletin.
const NEWS_HEADLINES: usize = 3;

/// Writes from built-in templates, in Japanese or English; needs no network. Variants rotate
/// so consecutive scripts for the same block differ.
#[derive(Debug, Default)]
pub struct TemplateWriter {
    turn: AtomicUsize,
}

impl TemplateWriter {
    pub fn new() -> Self {
        Self::default()
    }
}

fn greeting(hour: u8, japanese: bool) -> &'static str {
    match (hour, japanese) {
        (5..=10, true) => "おはようございます",
        (11..=17, true) => "こんにちは",
        (_, true) => "こんばんは",
        (5..=11, false) => "Good morning",
        (12..=17, false) => "Good afternoon",
        (_, false) => "Good evening",
    }
}

/// Templates per block: `{station}`, `{topic}`, `{greeting}` are filled in.
fn templates(block: Block, japanese: bool) -> &'static [&'static str] {
    match (block, japanese) {
        (Block::Op, true) => &[
            "{greeting}。{station}です。この時間も、あなたのそばでお届けします。今日はまず{topic}の話から始めましょう。",
            "{station}、オープニングです。{greeting}。{topic}の話題を中心に、ゆったりお付き合いください。",
        ],
        (Block::News, true) => &[
            "ここでニュースの時間です。ただいま配信できる新しいニュースはありません。最新の情報は公式の発表をご確認ください。このあとは{topic}の話題に戻ります。",
            "{station}のニュースコーナーです。現在、お伝えできる確かなニュースは届いていません。確かな情報が入り次第お伝えします。",
        ],
        (Block::Qanda, true) => &[
            "質問コーナーの時間です。{topic}について聞きたいこと、話したいことがあれば、プッシュトゥトークかメッセージで送ってください。順番にお答えします。",
            "リスナーの皆さんからの声をお待ちしています。テーマは{topic}です。ボタンを押して話しかけてください。",
        ],
        (Block::Music, true) => &[
            "ここからは音楽の時間です。{topic}を思い浮かべながら、ゆっくりお聴きください。",
            "{station}、ミュージックブロックです。{topic}にちなんだ一曲、どうぞ。",
        ],
        (Block::TopicA, true) => &[
            "今日のテーマは{topic}です。身近なところにも、{topic}の面白さはたくさん隠れています。皆さんはどう感じていますか。",
            "{topic}について少しお話しします。知れば知るほど奥が深いのが{topic}です。このあとも一緒に考えていきましょう。",
        ],
        (Block::Jingle, true) => &[
            "{station}。二十四時間、あなたと一緒に。",
            "お聴きの放送は{station}です。",
        ],
        (Block::Op, false) => &[
            "{greeting}, this is {station}. We are with you around the clock. Let's start today with {topic}.",
            "{station}, the opening. {greeting}. Stay with us for an hour about {topic}.",
        ],
        (Block::News, false) => &[
            "Time for the news. There are no new items we can bring you right now; please check official sources for the latest. Back to {topic} after this.",
            "This is the {station} news desk. No confirmed news has reached us yet. We will bring it to you as soon as it does.",
        ],
        (Block::Qanda, false) => &[
            "It is question time. If you want to ask or say something about {topic}, hold the talk button or send a message, and we will take you in turn.",
            "We are waiting for your voice. Today's theme is {topic}. Press the button and talk to us.",
        ],
        (Block::Music, false) => &[
            "And now, some music. Think of {topic} and enjoy.",
            "{station}, music block. Here is a song about {topic}.",
        ],
        (Block::TopicA, false) => &[
            "Today's theme is {topic}. There is more to {topic} close to home than you might think. What do you make of it?",
            "A few words about {topic}. The more you learn about {topic}, the deeper it gets. Let's keep thinking about it together.",
        ],
        (Block::Jingle, false) => &[
            "{station}. Twenty-four hours, with you.",
            "You are listening to {station}.",
        ],
    }
}

/// A JINGLE hour's pieces: the station's name and a word on the topic, so the hour is not
/// the station ID over and over (the ID alone is the JINGLE template without a topic).
fn jingle_pieces(japanese: bool) -> &'static [&'static str] {
    if japanese {
        &[
            "{station}。二十四時間、あなたと一緒に。この時間は{topic}の話題を、短くお届けしています。",
            "お聴きの放送は{station}です。{topic}について、ひとこと。知っているようで知らないことが、まだまだありそうです。",
        ]
    } else {
        &[
            "{station}. Twenty-four hours, with you. This hour, short takes on {topic}.",
            "You are listening to {station}. A word on {topic}: there is always more to it than it seems.",
        ]
    }
}

/// Answers to a caller: offline, the host cannot know what they said (or answer it), so it
/// thanks them.
fn answers(japanese: bool) -> &'static [&'static str] {
    if japanese {
        &[
            "お便りありがとうございます。声を届けてくださって、とても嬉しいです。これからも{station}をよろしくお願いします。",
            "ありがとうございました。あなたの声、しっかり受け止めました。また気軽に話しかけてくださいね。",
        ]
    } else {
        &[
            "Thank you so much for calling in. It is great to hear from you. Stay with {station}.",
            "Thanks for that. We heard you, and we appreciate it. Talk to us again any time.",
        ]
    }
}

/// A bulletin reading up to [`NEWS_HEADLINES`] headlines verbatim, each with its source.
fn news_bulletin(station: &str, news: &[NewsItem], japanese: bool) -> String {
    let mut out = if japanese {
        format!("{station}、ニュースの時間です。")
    } else {
        format!("This is the {station} news.")
    };
    for item in news.iter().take(NEWS_HEADLINES) {
        // The template adds its own full stop; a headline's own would double it.
        let title = item
            .title
            .trim()
            .trim_end_matches(['。', '.', '！', '!', '？', '?']);
        let source = item.source.trim();
        if japanese {
            out.push_str(&format!(
                "続いてのニュースです。{source}によりますと、{title}。"
            ));
        } else {
            out.push_str(&format!(" Next, according to {source}: {title}."));
        }
    }
    out.push_str(if japanese {
        "ニュースは以上です。"
    } else {
        " That is the news."
    });
    out
}

#[async_trait]
impl ScriptWriter for TemplateWriter {
    fn name(&self) -> &'static str {
        "template"
    }

    async fn write(&self, brief: &ScriptBrief<'_>) -> Result<String, WriterError> {
        let japanese = brief.language.to_ascii_lowercase().starts_with("ja");
        if brief.block == Block::News && !brief.news.is_empty() {
            return Ok(news_bulletin(brief.station, brief.news, japanese));
        }
        let variants = match brief.caller {
            Some(_) => answers(japanese),
            None if brief.block == Block::Jingle && !brief.topic.trim().is_empty() => {
                jingle_pieces(japanese)
            }
            None => templates(brief.block, japanese),
        };
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let template = variants[turn % variants.len()];
        Ok(template
            .replace("{station}", brief.station)
            .replace("{topic}", brief.topic)
            .replace("{greeting}", greeting(brief.hour, japanese)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brief(block: Block, language: &'static str) -> ScriptBrief<'static> {
        ScriptBrief {
            station: "Radio24",
            block,
            topic: "science",
            prompt: None,
            language,
            hour: 8,
            target_secs: 30.0,
            recent: &[],
            news: &[],
            caller: None,
        }
    }

    #[tokio::test]
    async fn a_jingle_hour_piece_says_the_station_and_the_topic_and_the_id_the_station_alone() {
        let writer = TemplateWriter::new();
        for lang in ["ja", "en"] {
            for _ in 0..2 {
                let piece = writer.write(&brief(Block::Jingle, lang)).await.unwrap();
                assert!(
                    piece.contains("Radio24") && piece.contains("science"),
                    "{piece}"
                );
                let id = ScriptBrief {
                    topic: "",
                    ..brief(Block::Jingle, lang)
                };
                let id = writer.write(&id).await.unwrap();
                assert!(
                    id.contains("Radio24") && id.len() < piece.len(),
                    "{id} / {piece}"
                );
            }
        }
    }

    #[tokio::test]
    async fn every_block_gets_a_script_in_both_languages() {
        let writer = TemplateWriter::new();
        for block in Block::ALL {
            for lang in ["ja", "en"] {
                let text = writer.write(&brief(block, lang)).await.unwrap();
                assert!(!text.contains('{'), "unfilled template: {text}");
                assert!(
                    text.contains("Radio24") || text.contains("science"),
                    "{text}"
                );
            }
        }
    }

    fn item(title: &str, source: &str) -> NewsItem {
        NewsItem {
            title: title.to_owned(),
            summary: Some("A summary the template does not read.".to_owned()),
            source: source.to_owned(),
            link: None,
            published: None,
        }
    }

    #[tokio::test]
    async fn news_reads_up_to_three_headlines_with_their_sources() {
        let writer = TemplateWriter::new();
        let news = vec![
            item("新しい駅が開業。", "ラジオ新聞"),
            item("明日は晴れ", "天気ワイヤ"),
            item("港の花火大会", "港タイムズ"),
            item("四つめの記事", "どこか"),
        ];
        let mut b = brief(Block::News, "ja");
        b.news = &news;
        let ja = writer.write(&b).await.unwrap();
        assert!(
            ja.contains("続いてのニュースです。ラジオ新聞によりますと、新しい駅が開業。"),
            "{ja}"
        );
        assert!(ja.contains("天気ワイヤによりますと、明日は晴れ。"), "{ja}");
        assert!(
            ja.contains("港タイムズによりますと、港の花火大会。"),
            "{ja}"
        );
        assert!(!ja.contains("四つめの記事"), "{ja}");
        assert!(!ja.contains("ありません"), "{ja}");

        let en_news = vec![item("Bridge reopens.", "City Wire")];
        let mut b = brief(Block::News, "en");
        b.news = &en_news;
        let en = writer.write(&b).await.unwrap();
        assert!(
            en.contains("according to City Wire: Bridge reopens."),
            "{en}"
        );
        assert!(!en.contains("summary"), "{en}");
    }

    #[tokio::test]
    async fn news_without_headlines_says_there_is_none() {
        let writer = TemplateWriter::new();
        let ja = writer.write(&brief(Block::News, "ja")).await.unwrap();
        assert!(
            ja.contains("ニュースはありません") || ja.contains("届いていません"),
            "{ja}"
        );
        let en = writer.write(&brief(Block::News, "en")).await.unwrap();
        assert!(
            en.contains("no new items") || en.contains("No confirmed news"),
            "{en}"
        );
    }

    #[tokio::test]
    async fn variants_rotate() {
        let writer = TemplateWriter::new();
        let a = writer.write(&brief(Block::TopicA, "en")).await.unwrap();
        let b = writer.write(&brief(Block::TopicA, "en")).await.unwrap();
        assert_ne!(a, b);
    }
}
