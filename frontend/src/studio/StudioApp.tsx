"use client";
// The operators' page: sign in, pick a channel, then the desk for that channel.
import { useCallback, useEffect, useRef, useState } from "react";
import { useChannels } from "@/api/hooks";
import { TopBar } from "@/components/TopBar";
import { useI18n, type MessageKey } from "@/i18n";
import { ChannelDesk } from "./ChannelDesk";
import { describeError } from "./format";
import { useAdminToken } from "./session";
import { SignIn } from "./SignIn";

export function StudioApp() {
  const { t } = useI18n();
  const { token, signIn, signOut } = useAdminToken();
  const [notice, setNotice] = useState<MessageKey | null>(null);

  useEffect(() => {
    document.title = t("studio.pageTitle");
  }, [t]);

  const expire = useCallback(() => {
    signOut();
    setNotice("studio.signIn.expired");
  }, [signOut]);

  return (
    <>
      <TopBar current="studio" />
      {token === undefined ? (
        <main className="page">
          <p className="muted" role="status">
            {t("studio.loading")}
          </p>
        </main>
      ) : token === null ? (
        <SignIn
          notice={notice && t(notice)}
          onSignedIn={(value) => {
            setNotice(null);
            signIn(value);
          }}
        />
      ) : (
        <Console
          token={token}
          onSignOut={() => {
            setNotice("studio.signIn.signedOut");
            signOut();
          }}
          onUnauthorized={expire}
        />
      )}
    </>
  );
}

function Console({
  token,
  onSignOut,
  onUnauthorized,
}: {
  token: string;
  onSignOut: () => void;
  onUnauthorized: () => void;
}) {
  const { t } = useI18n();
  const channels = useChannels();
  const [picked, setPicked] = useState<string | null>(null);
  const scheduleDirty = useRef(false);
  const names = channels.data?.channels ?? [];
  const channel = names.find((c) => c.name === picked)?.name ?? names[0]?.name ?? null;

  const pick = (name: string) => {
    if (scheduleDirty.current && !window.confirm(t("studio.schedule.leaveConfirm"))) return;
    scheduleDirty.current = false;
    setPicked(name);
  };

  return (
    <main className="page studio-page">
      <div className="studio-bar">
        <h1>{t("studio.title")}</h1>
        <div className="studio-bar-controls">
          <div className="channel-picker">
            <label htmlFor="studio-channel">{t("studio.channel")}</label>
            <select
              id="studio-channel"
              data-testid="channel"
              value={channel ?? ""}
              disabled={names.length === 0}
              onChange={(e) => pick(e.target.value)}
            >
              {names.length === 0 && <option value="">{t("studio.loading")}</option>}
              {names.map((c) => (
                <option key={c.name} value={c.name}>
                  {c.live ? c.name : t("studio.channelOffAir", { name: c.name })}
                </option>
              ))}
            </select>
          </div>
          <button type="button" className="btn btn-small" data-testid="sign-out" onClick={onSignOut}>
            {t("studio.signOut")}
          </button>
        </div>
      </div>
      {channels.error && !channels.data && (
        <p className="notice" role="alert">
          {describeError(channels.error, t)}
        </p>
      )}
      {channel && (
        <ChannelDesk
          key={channel}
          token={token}
          channel={channel}
          onUnauthorized={onUnauthorized}
          onScheduleDirty={(dirty) => {
            scheduleDirty.current = dirty;
          }}
        />
      )}
    </main>
  );
}
