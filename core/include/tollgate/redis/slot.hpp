// Redis Cluster hash slots: the CRC16 that Redis Cluster uses (XMODEM:
// polynomial 0x1021, initial value 0, no reflection, no final xor) and the
// slot of a key, honouring hash tags. tollgate's keys are
// `<prefix>{<user key>}:<policy>`, so all of one user key's policies share
// a slot (the prefix holds no '{' or '}').
#pragma once

#include <cstdint>
#include <string_view>

namespace tollgate::redis {

inline constexpr uint16_t kClusterSlots = 16384;

// CRC16/XMODEM of `data`: crc16_xmodem("123456789") == 0x31C3.
uint16_t crc16_xmodem(std::string_view data);

// The cluster slot (0..16383) of `key`: CRC16 of its hash tag mod 16384.
// The tag is the text between the first '{' and the first '}' after it, if
// that text is not empty; otherwise the whole key is hashed (the rule of
// the Redis Cluster specification, so "foo{}{bar}" hashes the whole key and
// "foo{{bar}}" hashes "{bar").
uint16_t hash_slot(std::string_view key);

}  // namespace tollgate::redis
