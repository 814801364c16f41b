#!/bin/sh
# Real OpenPGP keys for operations.docker.key_fingerprint's tests, with what gpg says of each.
# Run as: sh capture-keys.sh (from this folder; Debian 12, gnupg 2.2.40, debian-archive-keyring 2023.3+deb12u2).
# Each <name>.asc has a <name>.colons.txt beside it: `gpg --with-colons --fingerprint` after importing it into an
# empty keyring. Generated keys live in a throwaway GNUPGHOME; nothing of the machine's own keyrings changes.
set -eu
out=keys
mkdir -p "$out"
GNUPGHOME=$(mktemp -d)
export GNUPGHOME
trap 'rm -rf "$GNUPGHOME"' EXIT

colons() {  # the key file's fingerprints, as gpg sees them in a keyring of their own
    home=$(mktemp -d)
    GNUPGHOME=$home gpg --batch --quiet --import "$out/$1.asc" 2>/dev/null
    GNUPGHOME=$home gpg --batch --with-colons --fingerprint 2>/dev/null | grep -E '^(pub|sub|fpr|uid):' > "$out/$1.colons.txt"
    rm -rf "$home"
}

# Generated here: gpg's default algorithm (rsa3072 in 2.2) and ed25519, no passphrase, no expiry.
gpg --batch --passphrase '' --quick-gen-key 'pyinfra-iluvatar test key (rsa) <test@example.invalid>' default default never
gpg --batch --passphrase '' --quick-gen-key 'pyinfra-iluvatar test key (ed25519) <test-ed@example.invalid>' ed25519 sign never
gpg --batch --armor --export test@example.invalid > "$out/gpg-generated-rsa3072.asc"
gpg --batch --armor --export test-ed@example.invalid > "$out/gpg-generated-ed25519.asc"
colons gpg-generated-rsa3072
colons gpg-generated-ed25519
# An armored block that is not a key: a detached signature made with the ed25519 key.
printf 'signed text\n' > "$GNUPGHOME/payload"
gpg --batch --yes --armor --local-user test-ed@example.invalid --output "$out/gpg-detached-signature.asc" --detach-sign "$GNUPGHOME/payload"

# Debian's archive keys, exported from the binary keyrings debian-archive-keyring installs.
export_debian() {  # <keyring in /usr/share/keyrings> <name>
    gpg --no-default-keyring --keyring "/usr/share/keyrings/$1.gpg" --batch --armor --export > "$out/$2.asc"
    colons "$2"
}
export_debian debian-archive-bookworm-stable debian-12-bookworm-stable-release
export_debian debian-archive-bullseye-stable debian-11-bullseye-stable-release
# Two primary keys in one block: both of the above, exported together.
gpg --no-default-keyring --keyring /usr/share/keyrings/debian-archive-bookworm-stable.gpg \
    --keyring /usr/share/keyrings/debian-archive-bullseye-stable.gpg --batch --armor --export \
    > "$out/debian-11-and-12-stable-release.asc"
colons debian-11-and-12-stable-release
gpg --batch --list-packets "$out/debian-11-and-12-stable-release.asc" 2>/dev/null | grep -E '^(:public key packet:|\s+keyid:)' \
    > "$out/debian-11-and-12-stable-release.packets.txt"

# Docker's release key and RFC 9580's version 6 sample are kept as found (see README.md); only gpg's view of
# them is captured here. gpg 2.2 cannot read a version 6 key: what it says instead is kept.
colons docker-release
home=$(mktemp -d)
GNUPGHOME=$home gpg --batch --import "$out/rfc9580-a3-v6-certificate.asc" > "$out/rfc9580-a3-v6-certificate.gpg-import.txt" 2>&1 \
    || echo "[exit=$?]" >> "$out/rfc9580-a3-v6-certificate.gpg-import.txt"
rm -rf "$home"
