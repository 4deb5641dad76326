// libsndfile (WAV, FLAC, OGG/Vorbis, ... decoding) and libsamplerate (band-limited resampling) for
// `tandem prepare-audio`: Debian's libsndfile1-dev and libsamplerate0-dev.
#include <sndfile.h>
#include <samplerate.h>
