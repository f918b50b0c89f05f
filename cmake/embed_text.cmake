# Writes OUT, a C++ source that defines `extern const char* const SYMBOL`
# (in namespace NAMESPACE) holding the text of IN, so a file that is edited as
# itself (the dashboard's HTML) ships inside the binary with no runtime file.
# Usage: cmake -DIN=... -DOUT=... -DSYMBOL=... -DNAMESPACE=... -P embed_text.cmake
file(READ "${IN}" content)
string(FIND "${content}" ")KVSTACK_EMBED\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )KVSTACK_EMBED\"")
endif()
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by cmake/embed_text.cmake; edit that file instead.\n"
  "namespace ${NAMESPACE} {\nextern const char* const ${SYMBOL};\n"
  "const char* const ${SYMBOL} = R\"KVSTACK_EMBED(${content})KVSTACK_EMBED\";\n}\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
