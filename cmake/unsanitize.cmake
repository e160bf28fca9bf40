# unsanitize.cmake — hm_unsanitize(TARGET): takes the directory's -fsanitize options (compile and link)
# off one target. For the drop-in malloc and the programs that run on it: a preloaded malloc cannot
# share a process with AddressSanitizer's, nor the libFuzzer runtime.
function(hm_unsanitize target)
  foreach(prop COMPILE_OPTIONS LINK_OPTIONS)
    get_target_property(_opts ${target} ${prop})
    if(_opts)
      list(FILTER _opts EXCLUDE REGEX "^-fsanitize")
    else()
      set(_opts "")
    endif()
    set_target_properties(${target} PROPERTIES ${prop} "${_opts}")
  endforeach()
endfunction()
