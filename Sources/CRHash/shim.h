#include <rhash.h>
