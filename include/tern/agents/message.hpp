// Message: what agents send, publish, request and reply with. Small scalars travel inline
// (`type`, `value`); bytes travel in a shared, reference-counted Payload.
//
//   tern::Message m;
//   m.type = kTemperature;   // your own discriminator
//   m.value = 215;           // 21.5 C, in tenths
//   m.priority = 2;          // 0..3, 3 most urgent
//   ctx.publish(temperature_topic, m);
#pragma once

#include <cstdint>

#include "tern/agents/payload.hpp"
#include "tern/core/errc.hpp"
#include "tern/core/pending_table.hpp"
#include "tern/detail/port_state.hpp"

namespace tern {

using AgentId = std::uint16_t;
inline constexpr AgentId kNoAgent = 0xFFFF;  // the sender of messages from outside agents
using TopicId = std::uint16_t;
inline constexpr TopicId kNoTopic = 0xFFFF;

enum class MessageKind : std::uint8_t { event, request, reply, error };

inline constexpr unsigned kPriorityLevels = 4;  // Message::priority is 0..3

// Message::value: 64 bits on Linux, 32 on Cortex-M (a wider argument travels in a
// payload there).
using MessageValue = detail::PortMessageValue;

struct Message {
  // Largest fields first, so the struct packs to 40 bytes on 32- and 64-bit targets (on
  // Cortex-M too: the 32-bit value leaves 4 bytes before the 8-aligned correlation).
  MessageValue value = 0;     // a small inline argument (32 bits on Cortex-M)
  RequestId correlation;      // set for requests and their replies
  Payload payload;            // shared bytes, if any
  std::uint32_t type = 0;     // application-defined discriminator
  TopicId topic = kNoTopic;   // set by publish()
  AgentId sender = kNoAgent;  // set by the runtime
  AgentId receiver = kNoAgent;
  MessageKind kind = MessageKind::event;
  std::uint8_t priority = 0;  // 0..3; higher is delivered first (above 3: queued and
                              // delivered as 3)
  Errc status = Errc::ok;     // for kind == error
};

}  // namespace tern
