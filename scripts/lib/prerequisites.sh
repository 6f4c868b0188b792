# Sourced by scripts/serve, scripts/test and .ci/run: finds what the station and its tests need
# on this machine and installs what is missing with the system's package manager where it may
# (apt-get as root or through sudo on Debian/Ubuntu; Homebrew on macOS). Where it may not, it
# stops with the one line to run. RADIO24_NO_INSTALL=1 only checks.
#
#   need_station    cargo, a C toolchain and cmake (libopus is built from source), espeak-ng
#                   (the offline voice)
#   need_web_build  Node.js 18.18+ and npm (the web app's static build)
#   need_tests      need_station + PostgreSQL's server programs, sox and opus-tools (audio
#                   fixtures and checks), Chromium, CJK fonts and Node.js 20+ (the browser tests)

prereq_say() { echo "radio24: $*" >&2; }

# What this machine installs packages with: apt, brew, or nothing.
prereq_manager() {
  if command -v apt-get >/dev/null 2>&1; then echo apt
  elif command -v brew >/dev/null 2>&1; then echo brew
  else echo none
  fi
}

# The command prefix that may install system packages: "" as root, "sudo" when sudo exists,
# or nothing (return 1).
prereq_privilege() {
  if [ "$(id -u)" -eq 0 ]; then echo ""
  elif command -v sudo >/dev/null 2>&1; then echo "sudo"
  else return 1
  fi
}

# install_packages APT_NAMES -- BREW_NAMES: installs the packages for this machine, or stops
# with the line to run.
install_packages() {
  local apt_names=() brew_names=() side=apt
  for name in "$@"; do
    if [ "$name" = "--" ]; then side=brew; continue; fi
    if [ "$side" = apt ]; then apt_names+=("$name"); else brew_names+=("$name"); fi
  done
  local manager sudo line
  manager=$(prereq_manager)
  case "$manager" in
    apt)
      [ "${#apt_names[@]}" -gt 0 ] || return 0
      line="sudo apt-get install -y ${apt_names[*]}"
      if [ "${RADIO24_NO_INSTALL:-0}" != "1" ] && sudo=$(prereq_privilege); then
        prereq_say "installing ${apt_names[*]} (apt-get)"
        # shellcheck disable=SC2086
        if $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_names[@]}" >/dev/null 2>&1 \
          || { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_names[@]}" >/dev/null; }; then
          return 0
        fi
      fi
      ;;
    brew)
      [ "${#brew_names[@]}" -gt 0 ] || return 0
      line="brew install ${brew_names[*]}"
      if [ "${RADIO24_NO_INSTALL:-0}" != "1" ]; then
        prereq_say "installing ${brew_names[*]} (Homebrew)"
        brew install "${brew_names[@]}" && return 0
      fi
      ;;
    *)
      line="install with your package manager: ${apt_names[*]}"
      ;;
  esac
  prereq_say "missing: ${apt_names[*]}; run: $line"
  exit 1
}

# The newest PostgreSQL server programs' folder (initdb, pg_ctl), or nothing.
postgres_bin_dir() {
  local initdb
  initdb=$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
  [ -n "$initdb" ] && dirname "$initdb"
}

need_station() {
  if ! command -v cargo >/dev/null 2>&1; then
    prereq_say "Rust is not installed; run: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
    exit 1
  fi
  local apt=() brew=()
  { command -v cc >/dev/null 2>&1 && command -v make >/dev/null 2>&1; } || { apt+=(build-essential); }
  command -v cmake >/dev/null 2>&1 || { apt+=(cmake); brew+=(cmake); }
  command -v espeak-ng >/dev/null 2>&1 || { apt+=(espeak-ng); brew+=(espeak-ng); }
  if [ "${#apt[@]}" -gt 0 ] || [ "${#brew[@]}" -gt 0 ]; then
    install_packages ${apt[@]+"${apt[@]}"} -- ${brew[@]+"${brew[@]}"}
  fi
  if [ "$(uname)" = Darwin ] && ! command -v cc >/dev/null 2>&1; then
    prereq_say "no C compiler; run: xcode-select --install"
    exit 1
  fi
}

# node_at_least MAJOR MINOR: Node.js and npm are installed, Node at least that version.
node_at_least() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    && node -e 'const [a,b]=process.versions.node.split(".").map(Number), M=+process.argv[1], m=+process.argv[2];
      process.exit(a>M||(a===M&&b>=m)?0:1)' "$1" "$2"
}

# need_node MAJOR MINOR WHAT: installs Node.js when it is missing, and stops when it is older
# than MAJOR.MINOR (Debian 12's own package is Node 18).
need_node() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || install_packages nodejs npm -- node
  if ! node_at_least "$1" "$2"; then
    prereq_say "$3 needs Node.js $1.$2 or newer (this one is $(node --version 2>/dev/null || echo missing)); install it from https://nodejs.org/en/download or https://github.com/nodesource/distributions"
    exit 1
  fi
}

# The web app's build: Next.js 15 needs Node 18.18.
need_web_build() { need_node 18 18 "building the web app"; }

need_tests() {
  need_station
  local apt=() brew=()
  if [ -z "${RADIO24_TEST_DATABASE_URL:-}" ] && [ "${RADIO24_SKIP_POSTGRES:-0}" != "1" ] \
    && ! postgres_answers 127.0.0.1 5432 && [ -z "$(postgres_bin_dir)" ]; then
    apt+=(postgresql); brew+=(postgresql@16)
  fi
  command -v sox >/dev/null 2>&1 || { apt+=(sox); brew+=(sox); }
  command -v opusdec >/dev/null 2>&1 || { apt+=(opus-tools); brew+=(opus-tools); }
  if [ "${RADIO24_SKIP_BROWSER:-0}" != "1" ] && [ "$(prereq_manager)" = apt ]; then
    [ -x "${RADIO24_CHROMIUM:-/usr/bin/chromium}" ] || apt+=(chromium)
    [ -d /usr/share/fonts/opentype/noto ] || apt+=(fonts-noto-cjk)
  fi
  if [ "${#apt[@]}" -gt 0 ] || [ "${#brew[@]}" -gt 0 ]; then
    install_packages ${apt[@]+"${apt[@]}"} -- ${brew[@]+"${brew[@]}"}
  fi
  if [ "${RADIO24_SKIP_BROWSER:-0}" != "1" ]; then
    # playwright-core, which drives Chromium in the browser tests, needs Node 20.
    need_node 20 0 "the browser tests (RADIO24_SKIP_BROWSER=1 leaves them out)"
  fi
}

# postgres_answers HOST PORT: a PostgreSQL server accepts connections there.
postgres_answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$1" -p "$2" 2>/dev/null
  else
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
  fi
}
