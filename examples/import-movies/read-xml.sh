#!/bin/sh
# Reads the acquisition metadata of a folder of movies, when there is any.
set -eu
if [ -f "$1/acquisition.xml" ]; then
    echo "read $(wc -c <"$1/acquisition.xml") bytes of acquisition metadata from $1/acquisition.xml"
else
    echo "no acquisition.xml in $1; using defaults"
fi
