#!/usr/bin/env bash
# The priors' data: data-T/{images,masks} links to every pair of the other three lesion sets,
# named SET_ID so that ids stay unique.
cd /work/studies/prior; D=/work/shared/data
mk() { t=$1; shift; rm -rf data-$t; mkdir -p data-$t/images data-$t/masks
 for s in "$@"; do for f in $D/$s/images/*; do ln -s $f data-$t/images/${s}_$(basename $f); done
 for f in $D/$s/masks/*; do ln -s $f data-$t/masks/${s}_$(basename $f); done; done; }
mk fuseg kvasir_seg busi isic2018_sample
mk kvasir_seg fuseg busi isic2018_sample
