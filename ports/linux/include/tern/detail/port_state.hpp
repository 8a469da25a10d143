namespace tern::detail { struct PortState { int placeholder = 0; }; inline constexpr int kPortMaxWatches = 64; }
