#include "scope_text.hpp"

// A str whose UTF-8 failed (its error is set), or bytes, or neither.
bool ScopeArg::parse_slow(PyObject* o) {
  Py_ssize_t n = 0;
  if (PyUnicode_Check(o)) {
    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return false;
    PyErr_Clear();  // a lone surrogate: the slow path, once per call for such a scope
    encoded_ = PyUnicode_AsEncodedString(o, "utf-8", "surrogatepass");
    if (encoded_ == nullptr) return false;
    o = encoded_;
  }
  char* p = nullptr;
  if (PyBytes_Check(o) && PyBytes_AsStringAndSize(o, &p, &n) == 0) {
    bytes_ = {p, static_cast<std::size_t>(n)};
    return true;
  }
  PyErr_SetString(PyExc_TypeError, "scope_id must be str or bytes");
  return false;
}

PyObject* scope_to_python(std::string_view bytes) {
  const auto n = static_cast<Py_ssize_t>(bytes.size());
  if (PyObject* text = PyUnicode_DecodeUTF8(bytes.data(), n, "surrogatepass"); text != nullptr) return text;
  PyErr_Clear();
  return PyUnicode_DecodeUTF8(bytes.data(), n, "replace");
}
