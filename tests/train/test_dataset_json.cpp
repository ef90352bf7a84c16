// The cases of a dataset folder's dataset.json (train/config.h list_cases): a wrong type anywhere is one
// InputError naming the file and the entry (it was an nlohmann type_error escaping), and a valid file
// lists its cases.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/test_util.h"
#include "io/error.h"
#include "train/config.h"

using namespace pw;
using namespace pw::train;
namespace fs = std::filesystem;

namespace {

DatasetSpec dataset_with(const fs::path& root, const std::string& dataset_json) {
  std::ofstream(root / "dataset.json") << dataset_json;
  DatasetSpec spec;
  spec.root = root;
  return spec;
}

}  // namespace

TEST_CASE("dataset.json: wrong types are one message naming the file and the entry") {
  const fs::path root = pw::test::temp_dir("dataset_json");
  const std::string file = (root / "dataset.json").string();
  struct Case {
    const char* text;
    const char* says;
  };
  for (const Case& c : {Case{R"([1, 2])", ": no 'training' list"},
                        Case{R"({"training": {"image": "a.nii"}})", ": no 'training' list"},
                        Case{R"({"training": [3]})", ": training[0]: not an object with 'image' and 'label'"},
                        Case{R"({"training": [{"image": "a.nii"}]})", ": training[0]: no 'label'"},
                        Case{R"({"training": [{"image": "a.nii", "label": "b.nii"}, {"image": 7, "label": "c.nii"}]})",
                             ": training[1].image: not a file name (expected a non-empty string, got number)"},
                        Case{R"({"training": [{"image": "a.nii", "label": ["b.nii"]}]})",
                             ": training[0].label: not a file name (expected a non-empty string, got array)"},
                        Case{R"({"training": [{"image": "", "label": "b.nii"}]})",
                             ": training[0].image: not a file name (expected a non-empty string, got an empty string)"},
                        Case{R"({"training": [}")", ": not valid JSON"},
                        Case{R"({"training": [1e999]})", ": not valid JSON"}}) {
    CAPTURE(c.text);
    const std::string want = file + c.says;
    CHECK_THROWS_WITH_AS(list_cases(dataset_with(root, c.text)), doctest::Contains(want.c_str()), InputError);
  }
  fs::remove(root / "dataset.json");
  fs::create_directory(root / "dataset.json");
  DatasetSpec spec;
  spec.root = root;
  CHECK_THROWS_WITH_AS(list_cases(spec), doctest::Contains((file + ": is a folder").c_str()), InputError);
}

TEST_CASE("dataset.json: a valid file lists its cases, relative to the folder") {
  const fs::path root = pw::test::temp_dir("dataset_json_ok");
  for (const char* f : {"img_a.nii.gz", "lab_a.nii.gz", "img_b.nii", "lab_b.nii"}) std::ofstream(root / f) << "x";
  const auto cases = list_cases(dataset_with(root, R"({"training": [
      {"image": "img_a.nii.gz", "label": "lab_a.nii.gz"}, {"image": "img_b.nii", "label": "lab_b.nii"}]})"));
  REQUIRE(cases.size() == 2);
  CHECK(cases[0].name == "img_a");
  CHECK(cases[0].images.at(0) == root / "img_a.nii.gz");
  CHECK(cases[0].label == root / "lab_a.nii.gz");
  CHECK(cases[1].name == "img_b");
  CHECK(cases[1].label == root / "lab_b.nii");
}
