// Who a writer is in a table slot, as the client and the slot operations both need it.
#pragma once

#include <cstdint>

namespace shmtimer::detail {

// The Ready control word a writer claimed or found (its pid and the claim's generation)
// and its start time. Arms are bound to this identity, not to what the slot holds when the
// arm lands (src/slot_ops.hpp).
struct Ownership {
  std::uint64_t control = 0;
  std::uint64_t start_time = 0;
};

}  // namespace shmtimer::detail
