#!/usr/bin/env bash
# Installs reticulate >= 1.41 into R's site library when the installed one is older.
# Debian 12 ships 1.28, which cannot convert numpy 2 arrays and aborts R inside rpy2.
# CRAN first where it is reachable; otherwise Debian's own source archive (trixie's
# r-cran-reticulate), fetched through a throw-away apt configuration that reuses this
# machine's own mirror and keyring, so no host name is written here.
set -euo pipefail
MIN=1.41

have=$(Rscript -e "cat(tryCatch(as.character(packageVersion('reticulate')), error = function(e) '0'))" 2>/dev/null || echo 0)
if Rscript -e "quit(status = as.integer(package_version('$have') < '$MIN'))" >/dev/null 2>&1; then
  exit 0
fi
echo "[setup] reticulate $have < $MIN: installing a newer one" >&2

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
site_lib=$(Rscript -e 'cat(.libPaths()[1])')

if Rscript -e "quit(status = if (nrow(available.packages(repos = 'https://cloud.r-project.org')) > 0) 0 else 1)" >/dev/null 2>&1; then
  as_root Rscript -e "install.packages('reticulate', lib = '$site_lib', repos = 'https://cloud.r-project.org')"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/parts"

# The machine's own mirror and keyring (deb822 first, then the one-line format).
uri=""; keyring=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f")
  keyring=$(awk '/^Signed-By:/ {print $2; exit}' "$f")
  [ -n "$uri" ] && break
done
if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
  uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
fi
[ -n "$uri" ] || { echo "[setup] cannot find a Debian mirror in apt's sources" >&2; exit 1; }
[ -n "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg

cat > "$tmp/parts/src.sources" <<SRC
Types: deb-src
URIs: $uri
Suites: trixie
Components: main
Signed-By: $keyring
SRC
opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$tmp/parts"
      -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache")
apt-get "${opts[@]}" update -qq
(cd "$tmp" && apt-get "${opts[@]}" source --tar-only --download-only r-cran-reticulate >/dev/null)
tarball=$(ls "$tmp"/r-cran-reticulate_*.orig.tar.* | head -n 1)
mkdir "$tmp/src" && tar -xf "$tarball" -C "$tmp/src"
pkgdir=$(dirname "$(find "$tmp/src" -maxdepth 2 -name DESCRIPTION | head -n 1)")
as_root R CMD INSTALL --library="$site_lib" "$pkgdir" >/dev/null
Rscript -e "stopifnot(packageVersion('reticulate') >= '$MIN'); cat('[setup] reticulate', as.character(packageVersion('reticulate')), '\n')"
