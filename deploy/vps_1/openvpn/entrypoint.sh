#!/bin/bash
# Creates the PKI on first start (kept on the edge-state volume), NATs VPN clients into the VPC, runs OpenVPN.
set -euo pipefail
export EASYRSA_PKI=/etc/openvpn/pki EASYRSA_BATCH=1
EASYRSA=/usr/share/easy-rsa/easyrsa

if [ ! -f "$EASYRSA_PKI/ca.crt" ]; then
  echo "[vpn] creating PKI in $EASYRSA_PKI"
  # the volume mount may already exist as an empty folder: init-pki wants to own it
  find "$EASYRSA_PKI" -mindepth 1 -delete 2>/dev/null || true
  "$EASYRSA" init-pki
  EASYRSA_REQ_CN="platform-vpn-ca" "$EASYRSA" build-ca nopass
  "$EASYRSA" build-server-full server nopass
  "$EASYRSA" gen-crl
  openvpn --genkey secret "$EASYRSA_PKI/tls-crypt.key"
fi
install -m 644 "$EASYRSA_PKI/crl.pem" /etc/openvpn/crl.pem  # read after OpenVPN drops to nobody

# VPN clients leave the container with its address; Docker then NATs them to vps_1's private address.
iptables -t nat -C POSTROUTING -s "$VPN_SUBNET" -d "$VPC_CIDR" -j MASQUERADE 2>/dev/null \
  || iptables -t nat -A POSTROUTING -s "$VPN_SUBNET" -d "$VPC_CIDR" -j MASQUERADE
# only the VPC is reachable through the tunnel, never the internet
iptables -C FORWARD -s "$VPN_SUBNET" ! -d "$VPC_CIDR" -j DROP 2>/dev/null \
  || iptables -A FORWARD -s "$VPN_SUBNET" ! -d "$VPC_CIDR" -j DROP

mkdir -p /dev/net
[ -c /dev/net/tun ] || mknod /dev/net/tun c 10 200
exec openvpn --config /etc/openvpn/server.conf
