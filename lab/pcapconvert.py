# SPDX-License-Identifier: GPL-2.0-or-later
"""Turns captures of any common link type (Ethernet with VLAN tags, Linux SLL
and SLL2, BSD loopback, raw IP, PPP; pcap or pcapng) into one Ethernet pcap for
tcpreplay in the lab: sources become 192.0.2.100-199 / 2001:db8:1::100-199,
destinations the lab resolver, MACs the lab's, checksums fixed (IPv4 UDP: 0,
IPv6 UDP: recomputed; fragments keep theirs). Nothing else is changed, so
malformed DNS stays malformed."""
import struct
from pathlib import Path

UPSTREAM_V4 = bytes([198, 51, 100, 53])
UPSTREAM_V6 = bytes.fromhex("20010db8000200000000000000000053")


def read_frames(path: Path):
    """(link type, frame bytes) for every packet of a pcap or pcapng file."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = "<" if magic[0] in (0xD4, 0x4D) else ">"
        link = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
        offset = 24
        while offset + 16 <= len(data):
            captured = struct.unpack(endian + "I", data[offset + 8:offset + 12])[0]
            yield link, data[offset + 16:offset + 16 + captured]
            offset += 16 + captured
    elif magic == b"\x0a\x0d\x0d\x0a":
        endian, links, offset = "<", [], 0
        while offset + 12 <= len(data):
            block_type = struct.unpack(endian + "I", data[offset:offset + 4])[0]
            if block_type == 0x0A0D0D0A:
                endian = "<" if data[offset + 8:offset + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                links = []
            length = struct.unpack(endian + "I", data[offset + 4:offset + 8])[0]
            if length < 12 or offset + length > len(data):
                break
            body = data[offset + 8:offset + length - 4]
            if block_type == 1:
                links.append(struct.unpack(endian + "H", body[:2])[0])
            elif block_type == 6 and len(body) >= 20:
                interface, captured = struct.unpack(endian + "I", body[:4])[0], struct.unpack(endian + "I", body[12:16])[0]
                if interface < len(links):
                    yield links[interface], body[20:20 + captured]
            elif block_type == 3 and links:
                yield links[0], body[4:]
            offset += length


def ip_packet(link: int, frame: bytes) -> bytes | None:
    if link == 1:  # Ethernet, with any number of VLAN tags
        offset, ethertype = 12, None
        while offset + 2 <= len(frame):
            ethertype = struct.unpack("!H", frame[offset:offset + 2])[0]
            if ethertype in (0x8100, 0x88A8, 0x9100):
                offset += 4
                continue
            break
        return frame[offset + 2:] if ethertype in (0x0800, 0x86DD) else None
    if link == 113:  # Linux cooked
        return frame[16:] if frame[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if link == 276:  # Linux cooked v2
        return frame[20:] if frame[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    if link in (0, 108):  # BSD loopback: address family
        return frame[4:] if len(frame) > 4 else None
    if link in (12, 14, 101, 228, 229):  # raw IP
        return frame
    if link == 9:  # PPP
        body = frame[2:] if frame[:2] == b"\xff\x03" else frame
        return body[2:] if body[:2] in (b"\x00\x21", b"\x00\x57") else None
    return None


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def relocate(packet: bytes, index: int) -> bytes | None:
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        p = bytearray(packet)
        header = (p[0] & 0x0F) * 4
        p[12:16] = bytes([192, 0, 2, 100 + index % 100])
        p[16:20] = UPSTREAM_V4
        p[10:12] = b"\x00\x00"
        p[10:12] = struct.pack("!H", checksum(bytes(p[:header])))
        fragment = struct.unpack("!H", p[6:8])[0] & 0x3FFF
        if p[9] == 17 and fragment == 0 and len(p) >= header + 8:
            p[header + 6:header + 8] = b"\x00\x00"  # no UDP checksum (allowed over IPv4)
        return bytes(p)
    if version == 6 and len(packet) >= 40:
        p = bytearray(packet)
        p[8:24] = bytes.fromhex("20010db8000100000000000000000000")[:14] + struct.pack("!H", 0x100 + index % 100)
        p[24:40] = UPSTREAM_V6
        if p[6] == 17 and len(p) >= 48:
            udp_length = struct.unpack("!H", p[44:46])[0]
            if 8 <= udp_length <= len(p) - 40:
                p[46:48] = b"\x00\x00"
                pseudo = bytes(p[8:40]) + struct.pack("!IxxxB", udp_length, 17)
                value = checksum(pseudo + bytes(p[40:40 + udp_length]))
                p[46:48] = struct.pack("!H", value or 0xFFFF)
        return bytes(p)
    return None


def convert(captures: list[Path], output: Path, destination_mac: bytes, source_mac: bytes) -> dict:
    """Writes the Ethernet pcap; returns counts per capture and in all."""
    report = {"files": 0, "packets": 0, "skipped": 0, "too_long": 0, "per_file": {}}
    with output.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for path in captures:
            sent = skipped = 0
            for index, (link, frame) in enumerate(read_frames(path)):
                packet = relocate(ip_packet(link, frame) or b"", index)
                if packet is None:
                    skipped += 1
                    continue
                if len(packet) > 1500:  # more than the lab's MTU: tcpreplay could not send it
                    report["too_long"] += 1
                    continue
                ethertype = b"\x08\x00" if packet[0] >> 4 == 4 else b"\x86\xdd"
                frame_out = destination_mac + source_mac + ethertype + packet
                out.write(struct.pack("<IIII", 0, 0, len(frame_out), len(frame_out)) + frame_out)
                sent += 1
            report["files"] += 1
            report["packets"] += sent
            report["skipped"] += skipped
            report["per_file"][path.name] = sent
    return report
