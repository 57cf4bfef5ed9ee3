#include "tollgate/redis/slot.hpp"

#include <array>

namespace tollgate::redis {
namespace {

// The table for one byte at a time, computed by the compiler: entry b is
// the CRC of the byte b shifted in MSB first (no reflection).
constexpr std::array<uint16_t, 256> make_crc16_table() {
  std::array<uint16_t, 256> table{};
  for (unsigned b = 0; b < 256; ++b) {
    uint16_t crc = static_cast<uint16_t>(b << 8);
    for (int bit = 0; bit < 8; ++bit)
      crc = static_cast<uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021
                                                 : crc << 1);
    table[b] = crc;
  }
  return table;
}

constexpr std::array<uint16_t, 256> kCrc16Table = make_crc16_table();

constexpr uint16_t crc16(std::string_view data) {
  uint16_t crc = 0;
  for (const char c : data)
    crc = static_cast<uint16_t>(
        (crc << 8) ^
        kCrc16Table[((crc >> 8) ^ static_cast<uint8_t>(c)) & 0xff]);
  return crc;
}

// The check value of CRC-16/XMODEM, and two table entries worked by hand.
static_assert(crc16("123456789") == 0x31C3);
static_assert(kCrc16Table[1] == 0x1021 && kCrc16Table[0x80] == 0x9188);
static_assert(crc16("") == 0);

}  // namespace

uint16_t crc16_xmodem(std::string_view data) {
  return crc16(data);
}

uint16_t hash_slot(std::string_view key) {
  const size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  return crc16(key) & (kClusterSlots - 1);
}

}  // namespace tollgate::redis
