// A scope between Python and the table. torch's default scope is "<file>#<line>", and a
// file name that is not UTF-8 reaches Python as a str with lone surrogates ("\udcff");
// torch's own client and server take such scopes, so shmtimer does too. Such a str is
// stored as its "surrogatepass" UTF-8 bytes (the bytes a FIFO line's "\udcff" escape
// names), and a scope read back decodes the same way, so it round-trips unchanged.
#pragma once

#include <Python.h>

#include <string_view>

// The bytes of a scope argument: a str's UTF-8 (cached in the str by CPython), a str
// with lone surrogates encoded with "surrogatepass" (held here), or bytes as they are.
class ScopeArg {
 public:
  ScopeArg() = default;
  ScopeArg(const ScopeArg&) = delete;
  ScopeArg& operator=(const ScopeArg&) = delete;
  ~ScopeArg() { Py_XDECREF(encoded_); }

  // False with the Python error set when `o` is neither str nor bytes. Inline: it is on
  // every acquire's path; only a str that UTF-8 cannot encode takes the slow path.
  bool parse(PyObject* o) {
    Py_ssize_t n = 0;
    if (PyUnicode_Check(o)) {
      if (const char* p = PyUnicode_AsUTF8AndSize(o, &n); p != nullptr) {
        bytes_ = {p, static_cast<std::size_t>(n)};
        return true;
      }
    }
    return parse_slow(o);
  }
  std::string_view bytes() const { return bytes_; }

 private:
  bool parse_slow(PyObject* o);

  std::string_view bytes_;
  PyObject* encoded_ = nullptr;  // owns bytes_ when the str was re-encoded
};

// A new str for stored scope bytes: UTF-8 with surrogates passed through, else (bytes no
// client of this package could have written) with U+FFFD for what does not decode.
PyObject* scope_to_python(std::string_view bytes);
