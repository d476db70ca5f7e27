#!/bin/bash
# Creates the PKI on first start (kept on the edge-state volume), renews the CRL and the server certificate before
# they expire, NATs VPN clients into the VPC, runs OpenVPN.
# Paths default to the container's; the environment may move them (the tests run this script unchanged elsewhere).
set -euo pipefail
OPENVPN_DIR=${OPENVPN_DIR:-/etc/openvpn}
EASYRSA=${EASYRSA:-/usr/share/easy-rsa/easyrsa}
export EASYRSA_PKI=${EASYRSA_PKI:-$OPENVPN_DIR/pki} EASYRSA_BATCH=1
CONF=$OPENVPN_DIR/server.conf
CRL=$(awk '$1 == "crl-verify" {print $2}' "$CONF")  # where OpenVPN reads the CRL
: "${CRL:?$CONF has no crl-verify line}"
LOCK=$OPENVPN_DIR/.pki.lock                          # shared with vpn-client: one PKI change at a time
# easy-rsa signs CRLs for 180 days and certificates for 825: renew each this many days before it runs out,
# checking once a day while running.
CRL_RENEW_DAYS=${VPN_CRL_RENEW_DAYS:-30}
export EASYRSA_CERT_RENEW=${VPN_CERT_RENEW_DAYS:-30}
CHECK_SECONDS=${VPN_RENEW_CHECK_SECONDS:-86400}

log() { echo "[vpn] $*"; }

# true when the CRL is missing or its nextUpdate falls within CRL_RENEW_DAYS
crl_due() {
  local next
  next=$(openssl crl -in "$EASYRSA_PKI/crl.pem" -noout -nextupdate 2>/dev/null) || return 0
  [ "$(date -d "${next#nextUpdate=}" +%s)" -le $(($(date +%s) + CRL_RENEW_DAYS * 86400)) ]
}

server_cert_due() {
  ! openssl x509 -in "$EASYRSA_PKI/issued/server.crt" -noout -checkend $((EASYRSA_CERT_RENEW * 86400)) >/dev/null
}

# copy, then rename: a connection arriving meanwhile never reads a half-written CRL
install_crl() {
  install -m 644 "$EASYRSA_PKI/crl.pem" "$CRL.new"  # 644: read after OpenVPN drops to nobody
  mv -f "$CRL.new" "$CRL"
}

renew_crl() {
  crl_due || return 0
  log "renewing the CRL (expires within $CRL_RENEW_DAYS days)"
  "$EASYRSA" gen-crl
}

# a new key and certificate under the same name (the paths in server.conf); the old one is revoked as superseded,
# which also clears easy-rsa's renewed/ folder for the next renewal
renew_server_cert() {
  log "renewing the server certificate (expires within $EASYRSA_CERT_RENEW days)"
  "$EASYRSA" renew server nopass && "$EASYRSA" revoke-renewed server superseded && "$EASYRSA" gen-crl
}

# OpenVPN re-reads the crl-verify file on every new connection, so a renewed CRL needs no restart. The server
# certificate is read once, and OpenVPN has dropped to nobody, so it cannot load a new key: when the certificate is
# due, stop OpenVPN and let the restart policy (restart: unless-stopped) start the container, which renews it.
renew_loop() {
  local openvpn=$1
  while sleep "$CHECK_SECONDS"; do
    kill -0 "$openvpn" 2>/dev/null || return 0
    { flock 9 && renew_crl && install_crl; } 9>"$LOCK" || log "CRL renewal failed; next try in $CHECK_SECONDS s"
    if server_cert_due; then
      log "server certificate due for renewal: stopping OpenVPN so that the container restarts"
      kill -TERM "$openvpn"  # OpenVPN handles SIGTERM, so it arrives even at PID 1
      return 0
    fi
  done
}

exec 9>"$LOCK"
flock 9
if [ ! -f "$EASYRSA_PKI/ca.crt" ]; then
  log "creating PKI in $EASYRSA_PKI"
  # the volume mount may hold a half-made PKI; soft: a mount point cannot be removed, only emptied
  find "$EASYRSA_PKI" -mindepth 1 -delete 2>/dev/null || true
  "$EASYRSA" init-pki soft
  EASYRSA_REQ_CN="platform-vpn-ca" "$EASYRSA" build-ca nopass
  "$EASYRSA" build-server-full server nopass
  "$EASYRSA" gen-crl
  openvpn --genkey secret "$EASYRSA_PKI/tls-crypt.key"
fi
# a failed renewal must not stop the VPN while the old certificate or CRL still works; it is retried next start
if server_cert_due; then renew_server_cert || log "server certificate renewal failed"; fi
renew_crl || log "CRL renewal failed"
install_crl
exec 9>&-

# VPN clients leave the container with its address; Docker then NATs them to vps_1's private address.
iptables -t nat -C POSTROUTING -s "$VPN_SUBNET" -d "$VPC_CIDR" -j MASQUERADE 2>/dev/null \
  || iptables -t nat -A POSTROUTING -s "$VPN_SUBNET" -d "$VPC_CIDR" -j MASQUERADE
# only the VPC is reachable through the tunnel, never the internet
iptables -C FORWARD -s "$VPN_SUBNET" ! -d "$VPC_CIDR" -j DROP 2>/dev/null \
  || iptables -A FORWARD -s "$VPN_SUBNET" ! -d "$VPC_CIDR" -j DROP

mkdir -p /dev/net
[ -c /dev/net/tun ] || mknod /dev/net/tun c 10 200
# $$ stays this process's id across exec: the loop watches OpenVPN itself
renew_loop "$$" 9>&- &
exec openvpn --config "$CONF"
