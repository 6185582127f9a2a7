// A forward declaration of asio::io_context, for the public headers that only take one by reference:
// including them does not pull Asio (about 60,000 lines) into every file of an embedder or of the tests.
// Files that run I/O include the Asio headers they use themselves.
#pragma once

namespace asio {
class io_context;
}  // namespace asio
